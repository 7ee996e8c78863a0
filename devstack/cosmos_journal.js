// Durable storage for the local Cosmos DB server (--data-file): every write that succeeded is appended to a
// journal file before the client gets its answer, and a server started on an existing journal replays it.
// So the fault-injection tests can kill the server (SIGKILL included) and start it again without losing an
// acknowledged write, as real Cosmos DB would not. Journal lines are JSON: {method, url, headers, body}.
"use strict";
const fs = require("fs");
const { PassThrough } = require("stream");

// Headers that change what a write does. Preconditions (if-match, if-none-match) are left out: the write
// succeeded when it was made, and the replayed documents get new etags, so replaying it must not re-check them.
const KEPT_HEADERS = [
  "x-ms-documentdb-partitionkey",
  "x-ms-documentdb-is-upsert",
  "x-ms-cosmos-is-batch-request",
  "x-ms-cosmos-batch-atomic",
  "x-ms-cosmos-batch-continue-on-error",
  "content-type",
];

function isWrite(req) {
  if (!["POST", "PUT", "PATCH", "DELETE"].includes(req.method)) return false;
  const query = String(req.headers["x-ms-documentdb-isquery"] || "").toLowerCase() === "true";
  const type = String(req.headers["content-type"] || "");
  return !query && !type.includes("query+json");
}

function withoutPreconditions(body) {
  if (Array.isArray(body)) {
    // transactional batch: drop each operation's preconditions
    return body.map(op => {
      if (!op || typeof op !== "object") return op;
      const { ifMatch, ifNoneMatch, ...rest } = op;
      return rest;
    });
  }
  if (body && typeof body === "object" && Array.isArray(body.operations) && body.condition !== undefined) {
    const { condition, ...rest } = body; // a conditional patch that succeeded
    return rest;
  }
  return body;
}

class Journal {
  constructor(file) {
    this.file = file;
    this.replaying = false;
  }

  /** Called after a handler succeeded and before the answer is sent: the write is on disk first. */
  record(req, statusCode, body) {
    if (this.replaying || !isWrite(req) || statusCode < 200 || statusCode >= 300) return;
    const headers = {};
    for (const name of KEPT_HEADERS) if (req.headers[name] !== undefined) headers[name] = req.headers[name];
    const line = JSON.stringify({ method: req.method, url: req.url, headers, body: withoutPreconditions(body) });
    fs.appendFileSync(this.file, line + "\n");
  }

  /** Feed every journaled write through the server's request listener, in order. `bodyKey` is where the
   * launcher keeps a request's parsed body. */
  async replay(listener, bodyKey) {
    if (!fs.existsSync(this.file)) return 0;
    const lines = fs.readFileSync(this.file, "utf8").split("\n").filter(Boolean);
    this.replaying = true;
    let count = 0;
    try {
      for (const line of lines) {
        let entry;
        try {
          entry = JSON.parse(line);
        } catch (err) {
          break; // a line cut short by a kill mid-append: it was never acknowledged
        }
        await new Promise(resolve => {
          const req = new PassThrough();
          req.method = entry.method;
          req.url = entry.url;
          req.headers = { host: "localhost", ...entry.headers };
          req[bodyKey] = entry.body === undefined ? null : entry.body;
          req.end();
          const res = {
            statusCode: 200,
            finished: false,
            headers: {},
            setHeader(name, value) { this.headers[name.toLowerCase()] = value; },
            getHeader(name) { return this.headers[name.toLowerCase()]; },
            removeHeader(name) { delete this.headers[name.toLowerCase()]; },
            writeHead(status) { this.statusCode = status; return this; },
            write() { return true; },
            end() { this.finished = true; resolve(); },
            on() { return this; },
            once() { return this; },
          };
          listener(req, res);
        });
        count += 1;
      }
    } finally {
      this.replaying = false;
    }
    return count;
  }
}

module.exports = { Journal };
