#!/usr/bin/env node
/*
 * Local Cosmos DB (NoSQL API) server for development and tests.
 *
 *   node devstack/cosmos_server.js --host 127.0.0.1 --port 8081 [--delay-ms 0] [--ttl-sweep-ms 1000]
 *
 * Starts the HTTPS server of the npm package `@vercel/cosmosdb-server` (pinned 1.0.1; it ships its own
 * self-signed cert.pem/key.pem) and prints exactly one line
 *
 *   cosmos listening on https://HOST:PORT
 *
 * once it accepts connections. SIGTERM / SIGINT close it cleanly (exit code 0).
 *
 * The package, as shipped, differs from real Cosmos DB in ways the Python `azure-cosmos` SDK notices.
 * This launcher corrects them at start-up by wrapping the package's route handlers and patching its
 * account classes in memory (node_modules is never edited). Each correction below is tagged with the
 * defect it fixes:
 *
 *   [D1] point read / replace / delete / patch of a missing id or wrong partition key -> 404 NotFound
 *        (the package answers 500 "Cannot read properties of undefined").
 *   [D2] queries honour the x-ms-documentdb-partitionkey header, and cross-partition queries are served
 *        (the package ignores the header and rejects queries whose WHERE lacks the partition key).
 *   [D3] TTL (container defaultTtl, item ttl) is enforced (the package never expires anything).
 *   [D4] transactional batch works with the Python SDK (partition key in the header, not per operation),
 *        is all-or-nothing, and answers the way the SDK parses (200, or 207 with 424 for the other ops).
 *   [D5] keep-alive: responses no longer carry `Connection: close`, so a client reuses its TLS connection.
 *   [D6] --delay-ms N adds N ms to each request (models a network round trip in benchmarks).
 *   [D7] a keep-alive connection is not dropped when a request arrives while a large answer is still being
 *        written (Node's paused-parser error, seen under concurrent batches).
 *   [D8] query and read-feed pages are capped at 4 MB, as Cosmos DB does (the package sent any size).
 *   Other discrepancies found while testing with the SDK:
 *   [E1] replace_container emptied the container (documents were dropped).
 *   [E2] a malformed JSON body answered 500 instead of 400.
 *   [E3] replace with a body id different from the URL id replaced the other document.
 *   [E4] a create on a missing container answered 500, not 404 (raw REST; the SDK reads the container first).
 *   [E5] a document whose partition key differs from the header was accepted (Cosmos: 400).
 *   [E6] error bodies were `{"message": ""}` or `{}`; now Cosmos-style `{"code", "message"}`.
 *   [E7] a query-plan request would have been routed as a document create.
 *   [E8] ids containing '/', '\\', '?' or '#' were accepted (Cosmos: 400).
 *   [E9] a conditional patch's filter predicate was evaluated across all partitions.
 *   [P1] every query took time quadratic in the container's size (3.5 s for 20,000 documents): the
 *        query compiler gathers the FROM source with `reduce(($, c) => [...$, {c}], [])`, which copies
 *        the accumulator once per document. The compiled code now appends in place (linear), and so does
 *        the helper that strips `undefined` from every result page.
 *   [P2] every continuation page re-ran the whole query (FROM, WHERE, ORDER BY, projection over the whole
 *        container) and then skipped to the token, so paging was quadratic: reading 20,000 documents of one
 *        partition with a 3-field projection in pages of 1,000 through the Python SDK took 1.3-1.5 s (4.0-4.3 s
 *        with ORDER BY). The evaluated, not yet paginated result is now kept (last 16 queries) and a
 *        continuation request of the same query, parameters and partition only cuts its page from it:
 *        0.3-0.4 s (0.4 s).
 *        It is dropped by any write to the container or change of its properties; containers with TTL on
 *        and queries calling UDFs are not cached. COSMOS_SERVER_DEBUG_HEADERS=1 makes every query / read
 *        feed answer say whether it was served from the cache (x-devstack-result-cache: hit/miss/off).
 *   [Q1] `SELECT DISTINCT VALUE <expression> FROM ...`, which Cosmos DB serves, was a syntax error (the
 *        query package has no DISTINCT): the values of the query without DISTINCT, first occurrence of
 *        each kept, in one page.
 *
 * The patches rely on the package's internals, so the launcher refuses to run on another version.
 */
"use strict";

const path = require("path");

const PINNED_VERSION = "1.0.1";
const PKG_ROOT = path.dirname(require.resolve("@vercel/cosmosdb-server/package.json"));
const LIB = path.join(PKG_ROOT, "lib");
const lib = rel => require(path.join(LIB, rel));

/* ------------------------------------------------------------------------------------------------ */
/* Command line                                                                                     */
/* ------------------------------------------------------------------------------------------------ */

const USAGE = `Usage: node devstack/cosmos_server.js [--host 127.0.0.1] [--port 8081] [--delay-ms 0] [--ttl-sweep-ms 1000] [--data-file F]

  --host HOST          address to listen on (default 127.0.0.1)
  --port PORT          port to listen on; 0 picks a free one (default 8081)
  --delay-ms N         add N milliseconds before answering each request (default 0)
  --data-file F        keep every successful write in journal F and replay it at start (default: memory only)
  --ttl-sweep-ms N     how often expired documents are purged from memory (default 1000; 0 disables;
                       expired documents are hidden from reads and queries either way)

  Environment: COSMOS_SERVER_DEBUG_HEADERS=1 adds x-devstack-result-cache (hit/miss/off) to query answers.
`;

function parseArgs(argv) {
  const args = { host: "127.0.0.1", port: 8081, delayMs: 0, ttlSweepMs: 1000, dataFile: null };
  const rest = argv.slice();
  const intArg = (name, value) => {
    const n = Number(value);
    if (value === undefined || !Number.isInteger(n) || n < 0) {
      throw new Error(`${name} needs a non-negative integer, got ${value}`);
    }
    return n;
  };
  while (rest.length) {
    let key = rest.shift();
    let value;
    const eq = key.indexOf("=");
    if (key.startsWith("--") && eq > 0) {
      value = key.slice(eq + 1);
      key = key.slice(0, eq);
    }
    const next = () => (value !== undefined ? value : rest.shift());
    switch (key) {
      case "-h":
      case "--help":
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      case "--host":
        args.host = next();
        if (!args.host) throw new Error("--host needs a value");
        break;
      case "-p":
      case "--port":
        args.port = intArg("--port", next());
        if (args.port > 65535) throw new Error("--port must be <= 65535");
        break;
      case "--data-file":
        args.dataFile = next();
        break;
      case "--delay-ms":
        args.delayMs = intArg("--delay-ms", next());
        break;
      case "--ttl-sweep-ms":
        args.ttlSweepMs = intArg("--ttl-sweep-ms", next());
        break;
      default:
        throw new Error(`unknown argument: ${key}`);
    }
  }
  return args;
}

/* ------------------------------------------------------------------------------------------------ */
/* The package's modules                                                                            */
/* ------------------------------------------------------------------------------------------------ */

function checkVersion() {
  // eslint-disable-next-line import/no-dynamic-require, global-require
  const { version } = require(path.join(PKG_ROOT, "package.json"));
  if (version !== PINNED_VERSION) {
    throw new Error(
      `@vercel/cosmosdb-server ${version} is installed, but devstack/cosmos_server.js patches the ` +
        `internals of ${PINNED_VERSION}; pin it in package.json or re-check the patches.`
    );
  }
}

checkVersion();

const { createHttpsServer } = lib("index");
const routesModule = lib("routes");
const jsonModule = lib("json");
const Documents = lib("account/documents").default;
const Collections = lib("account/collections").default;
const readItems = lib("handler/_read-items").default;
const docOps = lib("handler/_document-operations");
const { patchOperation } = lib("handler/_patch-operations");
const { parsePartitionKey } = lib("utils/get-partition-from-header");
const getValue = lib("utils/get-value").default;
const trueHeader = lib("true-header").default;
const queryModulePath = require.resolve("@zeit/cosmosdb-query", { paths: [PKG_ROOT] });
const queryLib = rel => require(path.join(path.dirname(queryModulePath), rel));
const { SyntaxError: QuerySyntaxError } = require(queryModulePath);

const H = {
  readDocument: lib("handler/read-document").default,
  replaceDocument: lib("handler/replace-document").default,
  deleteDocument: lib("handler/delete-document").default,
  patchDocument: lib("handler/patch-document").default,
  createDocument: lib("handler/create-document").default,
  upsertDocument: lib("handler/upsert-document").default,
  queryDocuments: lib("handler/query-documents").default,
  readDocuments: lib("handler/read-documents").default,
  batchDocuments: lib("handler/batch-documents").default,
  readPartitionKeyRanges: lib("handler/read-partition-key-ranges").default
};

/* ------------------------------------------------------------------------------------------------ */
/* Helpers                                                                                          */
/* ------------------------------------------------------------------------------------------------ */

const PK_HEADER = "x-ms-documentdb-partitionkey";

const ERROR_CODES = {
  400: "BadRequest",
  401: "Unauthorized",
  403: "Forbidden",
  404: "NotFound",
  405: "MethodNotAllowed",
  408: "RequestTimeout",
  409: "Conflict",
  412: "PreconditionFailed",
  413: "RequestEntityTooLarge",
  424: "FailedDependency",
  429: "TooManyRequests",
  500: "InternalServerError",
  503: "ServiceUnavailable"
};

const NOT_FOUND_MESSAGE = "Entity with the specified id does not exist in the system.";
const PRECONDITION_MESSAGE =
  "Operation cannot be performed because one of the specified precondition is not met.";

class HttpError extends Error {
  constructor(statusCode, message, code) {
    super(message);
    this.statusCode = statusCode;
    this.code = code || ERROR_CODES[statusCode] || "Error";
  }
}

function errorBody(statusCode, message, code) {
  return { code: code || ERROR_CODES[statusCode] || "Error", message: message || "" };
}

function fail(res, statusCode, message, code) {
  res.statusCode = statusCode;
  return errorBody(statusCode, message, code);
}

/** Raw partition key header (string) or undefined. */
function rawPkHeader(req) {
  const header = req.headers[PK_HEADER];
  return Array.isArray(header) ? header[0] : header;
}

/** Partition key header parsed to an array of components, or null when absent. Throws 400 if malformed. */
function pkHeaderArray(req) {
  const raw = rawPkHeader(req);
  if (raw === undefined || raw === "") return null;
  let parsed;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new HttpError(400, `The partition key ${raw} is invalid.`);
  }
  if (!Array.isArray(parsed)) parsed = [parsed];
  return parsed;
}

/**
 * Partition key paths of a collection, each split into keys ("/a/b" -> ["a", "b"]). Cached per collection
 * object (a replaced collection is a new object): a query's partition filter asks once per document.
 */
const PK_PATHS = new WeakMap();
function pkPaths(collData) {
  if (collData && typeof collData === "object" && PK_PATHS.has(collData)) return PK_PATHS.get(collData);
  const paths = (((collData && collData.partitionKey) || {}).paths || []).map(p => p.slice(1).split("/"));
  if (collData && typeof collData === "object") PK_PATHS.set(collData, paths);
  return paths;
}

function isPartitioned(collData) {
  const paths = pkPaths(collData);
  return paths.length > 0 && !(paths.length === 1 && paths[0][0] === "_partitionKey");
}

/** Does a partition key header (array) designate the partition `doc` lives in? */
function pkMatches(collData, headerArr, doc) {
  if (!headerArr || headerArr.length === 0) return true; // [] = no specific partition
  if (!isPartitioned(collData)) return true;
  const paths = pkPaths(collData);
  for (let i = 0; i < headerArr.length && i < paths.length; i += 1) {
    const want = headerArr[i];
    const have = getValue(paths[i], doc);
    if (want !== null && typeof want === "object") {
      // [{}] is how the SDK spells "undefined" (item without a partition key value)
      if (Object.keys(want).length === 0 && have !== undefined) return false;
    } else if (want !== have) {
      return false;
    }
  }
  return true;
}

function requirePkHeader(req, collData) {
  const arr = pkHeaderArray(req);
  if (arr === null && isPartitioned(collData)) {
    throw new HttpError(400, "PartitionKey value must be supplied for this operation.");
  }
  return arr;
}

/**
 * [D1] Point lookup that never throws: the document `id` in the partition named by the header, or
 * null. The package's own lookup falls back to treating the id as a _rid, and collapses falsy partition
 * values onto the id, so the partition is checked again against the document's actual values. Expired
 * documents are already hidden by the [D3] patch of Documents#_item.
 */
function lookupDocument(collection, id, rawHeader, headerArr) {
  const collData = collection.read();
  if (!collData || id === undefined || id === null) return null;
  let key;
  try {
    key = rawHeader === undefined ? id : parsePartitionKey(rawHeader, id);
  } catch (err) {
    key = id;
  }
  const data = collection.document(id, key).read();
  if (!data) return null;
  if (data.id !== id && data._rid !== id) return null;
  if (!pkMatches(collData, headerArr, data)) return null;
  return data;
}

/* ------------------------------------------------------------------------------------------------ */
/* [P1] Linear-time FROM in compiled queries                                                        */
/* ------------------------------------------------------------------------------------------------ */

// @zeit/cosmosdb-query compiles every query to JavaScript whose FROM clause (and each JOIN) collects its
// rows with `coll.reduce(($, c) => [...$, { c }], [])`: the accumulator array is copied for every
// document, O(n^2) in the container's size. The rewrite below turns each `[...$, a, ...b]` built on the
// reduce accumulator into `$h.append($, [a, ...b])`, which pushes in place. The accumulator starts as a
// fresh `[]` literal on every reduce call and nothing else holds it, so the result is the same array
// contents in the same order.
const queryHelpers = queryLib("helpers");
const queryTransform = queryLib("transformer").default;
const babelGenerator = require(require.resolve("@babel/generator", { paths: [path.dirname(queryModulePath)] }))
  .default;

// The helpers' stripUndefined (applied to every result page) had the same quadratic array copy.
queryHelpers.stripUndefined = function stripUndefined(obj) {
  if (Array.isArray(obj)) {
    // remove `undefined` from arrays, unlike JSON.stringify which turns it into null
    const out = [];
    for (let i = 0; i < obj.length; i += 1) {
      if (typeof obj[i] !== "undefined") out.push(stripUndefined(obj[i]));
    }
    return out;
  }
  if (obj && typeof obj === "object") {
    const out = {};
    Object.keys(obj).forEach(key => {
      if (typeof obj[key] !== "undefined") out[key] = stripUndefined(obj[key]);
    });
    return out;
  }
  return obj;
};

// [D8] Cosmos DB caps every page of a query or read feed at 4 MB, whatever x-ms-max-item-count allows (and
// pages a query sent without that header the same way); the package returned the whole result in one answer,
// so a client reading a large day got one answer of tens of MB where Azure sends several. Every query and
// read feed ends in the engine's paginate(); this one cuts a page that would pass 4 MB before the item that
// crosses it (estimated from a sample of the page's items) and lets the engine make the continuation token.
const MAX_PAGE_BYTES = 4 * 1024 * 1024;
const enginePaginate = queryHelpers.paginate;
queryHelpers.paginate = (collection, maxItemCount, continuation, getRid, ...orders) => {
  const page = enginePaginate(collection, maxItemCount, continuation, getRid, ...orders);
  const items = page && page.result;
  if (!Array.isArray(items) || items.length < 2) return page;
  const step = Math.max(1, Math.floor(items.length / 64));
  let sampled = 0;
  let count = 0;
  for (let i = 0; i < items.length; i += step) {
    sampled += (items[i] === undefined ? 0 : Buffer.byteLength(JSON.stringify(items[i]))) + 1;
    count += 1;
  }
  const fit = Math.max(1, Math.floor(MAX_PAGE_BYTES / (sampled / count)));
  if (fit >= items.length) return page;
  return enginePaginate(collection, fit, continuation, getRid, ...orders);
};

queryHelpers.append = (accumulator, items) => {
  for (let i = 0; i < items.length; i += 1) accumulator.push(items[i]);
  return accumulator;
};

function isAccumulatorSpread(node) {
  return (
    node &&
    node.type === "ArrayExpression" &&
    node.elements.length > 0 &&
    node.elements[0] &&
    node.elements[0].type === "SpreadElement" &&
    node.elements[0].argument.type === "Identifier" &&
    node.elements[0].argument.name === "$"
  );
}

function appendInPlace(node) {
  if (Array.isArray(node)) return node.map(appendInPlace);
  if (!node || typeof node !== "object") return node;
  const out = {};
  Object.keys(node).forEach(key => {
    out[key] = appendInPlace(node[key]);
  });
  if (isAccumulatorSpread(out)) {
    return {
      type: "CallExpression",
      callee: {
        type: "MemberExpression",
        object: { type: "Identifier", name: "$h" },
        property: { type: "Identifier", name: "append" }
      },
      arguments: [{ type: "Identifier", name: "$" }, { type: "ArrayExpression", elements: out.elements.slice(1) }]
    };
  }
  return out;
}

const QueryPrototype = Object.getPrototypeOf(require(queryModulePath).default("SELECT * FROM c"));
Object.defineProperty(QueryPrototype, "code", {
  configurable: true,
  get() {
    if (!this._code) {
      this._code = babelGenerator(appendInPlace(queryTransform(this.ast))).code;
    }
    return this._code;
  }
});

/* ------------------------------------------------------------------------------------------------ */
/* [D3] TTL                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

// Precise write time (ms) of each stored document object. `_ts` only has second resolution, which would
// make `ttl: 1` expire anywhere between 0 and 1 s after the write. Stored objects are never mutated
// in place by the package (every write stores a new object), so the object identifies the version.
const WRITTEN_AT = new WeakMap();
// Every Documents instance that ever held data, for the periodic sweep.
const LIVE_DOCUMENTS = new Set();
const REGISTERED = new WeakSet();

/** Effective TTL (seconds) of `doc` in `collData`, or null when it never expires. */
function effectiveTtl(collData, doc) {
  if (!collData) return null;
  const { defaultTtl } = collData;
  // TTL is off for the container unless defaultTtl is set (-1 = on, items live forever by default).
  if (typeof defaultTtl !== "number") return null;
  const ttl = typeof doc.ttl === "number" ? doc.ttl : defaultTtl;
  if (ttl === -1 || !(ttl > 0)) return null;
  return ttl;
}

function isExpired(collData, doc, now) {
  const ttl = effectiveTtl(collData, doc);
  if (ttl === null) return false;
  const writtenAt = WRITTEN_AT.has(doc) ? WRITTEN_AT.get(doc) : (doc._ts || 0) * 1000;
  return now >= writtenAt + ttl * 1000;
}

/**
 * Removes a stored document from a Documents instance without going through Items#delete (which looks
 * the document up through _item again; calling it from inside _item would recurse).
 */
function rawRemove(docs, data) {
  const partition = docs._getPartition(data);
  docs._uniqueKeyPaths.forEach(keyPath => {
    const value = getValue(keyPath.slice(1).split("/"), data);
    const indexId = docs._getId(keyPath, value, partition);
    if (docs._index.get(indexId) === data._rid) docs._index.delete(indexId);
  });
  const item = docs._data.get(data._rid);
  if (item && item.read() === data) docs._data.delete(data._rid);
}

/** All live (unexpired) documents, purging the expired ones on the way. */
function liveDocuments(docs) {
  const collData = docs._parent.read();
  const now = Date.now();
  const out = [];
  const expired = [];
  docs._data.forEach(item => {
    const data = item.read();
    if (isExpired(collData, data, now)) expired.push(data);
    else out.push(data);
  });
  expired.forEach(data => rawRemove(docs, data));
  return out;
}

const SCOPE = Symbol("partitionScope");

/** Runs fn (synchronous) with Documents#query restricted to one partition. */
function withPartitionScope(docs, filter, fn) {
  const previous = docs[SCOPE];
  docs[SCOPE] = filter;
  try {
    return fn();
  } finally {
    docs[SCOPE] = previous;
  }
}

const origSet = Documents.prototype._set;
Documents.prototype._set = function _set(data) {
  if (!WRITTEN_AT.has(data)) WRITTEN_AT.set(data, Date.now());
  if (!REGISTERED.has(this)) {
    REGISTERED.add(this);
    LIVE_DOCUMENTS.add(new WeakRef(this));
  }
  return origSet.call(this, data);
};

// Every point operation of the package (read, create's uniqueness check, replace, upsert, delete, patch)
// goes through _item: an expired document is purged here and looks absent to all of them.
const origItem = Documents.prototype._item;
Documents.prototype._item = function _item(keyPath, keyPathValue, partition) {
  const item = origItem.call(this, keyPath, keyPathValue, partition);
  const data = item.read();
  if (data && isExpired(this._parent.read(), data, Date.now())) {
    rawRemove(this, data);
    return this._newItem();
  }
  return item;
};

// Queries and read feeds see only live documents. [D2] also adds an optional `filter` (the partition
// named by the request's partition key header) applied before the query runs, so TOP, aggregates,
// ORDER BY and continuation tokens all work on that partition alone. Continuation tokens of the
// query engine are _rid based, so a filtered set pages correctly.
Documents.prototype.query = function query(params, { maxItemCount, continuation, filter } = {}) {
  const parent = this._parent.read();
  if (!parent) return null;
  let data = liveDocuments(this);
  if (filter) data = data.filter(filter);
  // [E9] set by patch (below) while its filter predicate is evaluated: only the target's partition
  if (this[SCOPE]) data = data.filter(this[SCOPE]);
  const udf = this._userDefinedFunctions();
  const compositeIndexes =
    (parent.indexingPolicy ? parent.indexingPolicy.compositeIndexes : null) || [];
  const q = this._getQuery(params.query);
  try {
    return q.exec(data, {
      parameters: params.parameters,
      udf,
      maxItemCount,
      continuation,
      compositeIndexes
    });
  } catch (err) {
    err.badRequest = true;
    throw err;
  }
};

Documents.prototype.read = function read({ maxItemCount, continuation, filter } = {}) {
  if (!this._parent.read()) return null;
  let data = liveDocuments(this);
  if (filter) data = data.filter(filter);
  return this._getQuery("SELECT * FROM c").exec(data, { maxItemCount, continuation });
};

function sweepExpired() {
  LIVE_DOCUMENTS.forEach(ref => {
    const docs = ref.deref();
    if (!docs) {
      LIVE_DOCUMENTS.delete(ref);
      return;
    }
    if (docs._data.size && typeof (docs._parent.read() || {}).defaultTtl === "number") {
      liveDocuments(docs);
    }
  });
}

/** [E8] Cosmos requires a non-empty string id without '/', '\\', '?' or '#'. */
function checkItemId(doc) {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) {
    throw new HttpError(400, "The request body must be a JSON object.");
  }
  if (typeof doc.id !== "string" || doc.id === "") {
    throw new HttpError(400, "The input content is invalid because the required properties - 'id; ' - are missing");
  }
  if (/[/\\?#]/.test(doc.id)) {
    throw new HttpError(400, `The id '${doc.id}' contains an invalid character: '/', '\\', '?' and '#' are not allowed.`);
  }
}

/** [D3] Cosmos rejects an item ttl that is not a non-zero integer >= -1. */
function checkItemTtl(doc) {
  if (!doc || doc.ttl === undefined || doc.ttl === null) return;
  const { ttl } = doc;
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl === 0 || ttl < -1) {
    throw new HttpError(
      400,
      `The value of the 'ttl' property is invalid: ${JSON.stringify(ttl)}. It must be a non-zero positive integer or -1.`
    );
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* [P2] Continuation pages cut from the evaluated result                                            */
/* ------------------------------------------------------------------------------------------------ */

// The compiled query evaluates FROM, WHERE, ORDER BY and the projection over the whole container and only
// then hands the result to paginate(), which skips to the continuation token: every page paid for the
// whole query, so reading n rows in pages of k cost n^2/k. The array paginate() receives does not depend
// on the page size or the token (those are only paginate's own arguments), so it is kept for the next
// continuation request of the same query, which then only runs paginate() over it: same items, same
// order, same tokens. It is valid only while nothing can have changed the query's input:
//   - the write version of the container's document store is unchanged: every create, upsert, replace,
//     delete, patch, batch (and its undo), journal replay and TTL purge goes through the store's _data
//     Map, whose set / delete / clear advance the version;
//   - the collection's properties are the same object (replace_container changes the indexing policy,
//     the composite indexes ORDER BY needs, or the TTL);
//   - the container has TTL off: with TTL on, expiry changes results without any write;
//   - the query calls no UDF (UDFs are stored outside the document store).
// The key also holds the SQL text, the parameters and the partition the request names. Only a request
// carrying a continuation token is served from the cache; a first page always evaluates the query.
const RESULT_CACHE_SIZE = 16;
const RESULT_CACHE = new Map(); // key -> entry, least recently used first
const DATA_MAP = Symbol("dataMap");
const WRITE_VERSION = Symbol("writeVersion");
let writeCounter = 0;

function versionedMap(map) {
  if (!map || map[WRITE_VERSION] !== undefined) return map;
  map[WRITE_VERSION] = ++writeCounter; // eslint-disable-line no-plusplus
  ["set", "delete", "clear"].forEach(name => {
    const method = Map.prototype[name];
    Object.defineProperty(map, name, {
      configurable: true,
      writable: true,
      value(...args) {
        this[WRITE_VERSION] = ++writeCounter; // eslint-disable-line no-plusplus
        return method.apply(this, args);
      }
    });
  });
  return map;
}

// Items' constructor assigns `this._data = new Map()`; an accessor on the prototype sees that assignment
// (and any later one), so no store of documents exists whose Map is not versioned.
Object.defineProperty(Documents.prototype, "_data", {
  configurable: true,
  get() {
    return this[DATA_MAP];
  },
  set(map) {
    this[DATA_MAP] = versionedMap(map);
  }
});

// The compiled code ends in `return $h.paginate(...)` for every query that pages (aggregates return their
// one row without it). While a query runs, the arguments of each paginate() call are recorded; the result
// is cached only if there was exactly one call and its page is what the query returned.
let CAPTURE = null;
const pagePaginate = queryHelpers.paginate; // [D8]
queryHelpers.paginate = (collection, maxItemCount, continuation, getRid, ...orders) => {
  const page = pagePaginate(collection, maxItemCount, continuation, getRid, ...orders);
  if (CAPTURE) CAPTURE.push({ collection, getRid, orders, page });
  return page;
};

const DOCUMENTS_IDS = new WeakMap();
let documentsCounter = 0;

// Debug aid for tests: with COSMOS_SERVER_DEBUG_HEADERS=1, query and read-feed answers carry
// x-devstack-result-cache: "hit" (page cut from a cached result, the query did not run), "miss" (the
// query ran) or "off" (not cacheable).
const DEBUG_HEADERS = process.env.COSMOS_SERVER_DEBUG_HEADERS === "1";
const RESULT_CACHE_HEADER = "x-devstack-result-cache";
let lastCacheOutcome = "off";

function resultCacheKey(docs, kind, sql, parameters, { filter, filterKey }) {
  const collData = docs._parent.read();
  if (!collData || docs[SCOPE]) return null;
  if (typeof collData.defaultTtl === "number") return null;
  if (filter && typeof filterKey !== "string") return null;
  if (kind === "query") {
    if (typeof sql !== "string") return null;
    let code;
    try {
      ({ code } = docs._getQuery(sql));
    } catch (err) {
      return null; // the uncached path reports the syntax error
    }
    if (/\budf\s*[.[]/.test(code)) return null;
  }
  if (!DOCUMENTS_IDS.has(docs)) DOCUMENTS_IDS.set(docs, ++documentsCounter); // eslint-disable-line no-plusplus
  let params;
  try {
    params = JSON.stringify(parameters === undefined ? null : parameters);
  } catch (err) {
    return null;
  }
  return [DOCUMENTS_IDS.get(docs), kind, sql, params, filter ? filterKey : ""].join("\u0000");
}

function servePaged(docs, key, continuation, maxItemCount, evaluate) {
  if (!key) {
    lastCacheOutcome = "off";
    return evaluate();
  }
  const collData = docs._parent.read();
  const map = docs._data;
  const entry = RESULT_CACHE.get(key);
  RESULT_CACHE.delete(key);
  if (
    continuation &&
    entry &&
    entry.docs === docs &&
    entry.map === map &&
    entry.version === map[WRITE_VERSION] &&
    entry.collData === collData
  ) {
    const page = pagePaginate(entry.collection, maxItemCount, continuation, entry.getRid, ...entry.orders);
    if (page.continuation) RESULT_CACHE.set(key, entry); // the last page needs it no more
    lastCacheOutcome = "hit";
    return page;
  }
  const version = map[WRITE_VERSION];
  const previous = CAPTURE;
  const calls = [];
  CAPTURE = calls;
  let page;
  try {
    page = evaluate();
  } finally {
    CAPTURE = previous;
  }
  lastCacheOutcome = "miss";
  if (
    page &&
    page.continuation &&
    calls.length === 1 &&
    calls[0].page === page &&
    docs._data === map &&
    map[WRITE_VERSION] === version
  ) {
    const { collection, getRid, orders } = calls[0];
    RESULT_CACHE.set(key, { docs, map, version, collData, collection, getRid, orders });
    while (RESULT_CACHE.size > RESULT_CACHE_SIZE) RESULT_CACHE.delete(RESULT_CACHE.keys().next().value);
  }
  return page;
}

const uncachedQuery = Documents.prototype.query;
Documents.prototype.query = function query(params, options = {}) {
  const key = resultCacheKey(this, "query", params && params.query, params && params.parameters, options);
  return servePaged(this, key, options.continuation, options.maxItemCount, () =>
    uncachedQuery.call(this, params, options)
  );
};

/* [Q1] SELECT DISTINCT VALUE: the values of the query without DISTINCT, each once, in one page.
   The app asks it for the day partitions that hold rows (a few thousand values at most), so one page is
   what Cosmos DB would send too; the whole result is gathered across the package's own pages. */
const DISTINCT_VALUE = /^\s*SELECT\s+DISTINCT\s+VALUE\s+/i;
const queryWithoutDistinct = Documents.prototype.query;
Documents.prototype.query = function query(params, options = {}) {
  if (!params || typeof params.query !== "string" || !DISTINCT_VALUE.test(params.query)) {
    return queryWithoutDistinct.call(this, params, options);
  }
  if (options.continuation) return { result: [], continuation: null };
  const plain = { ...params, query: params.query.replace(DISTINCT_VALUE, "SELECT VALUE ") };
  const seen = new Map();
  let continuation;
  do {
    const page = queryWithoutDistinct.call(this, plain, { ...options, continuation, maxItemCount: 10000 });
    if (!page) return page;
    page.result.forEach(value => {
      const key = JSON.stringify(value === undefined ? null : value);
      if (!seen.has(key)) seen.set(key, value);
    });
    ({ continuation } = page);
  } while (continuation);
  return { result: [...seen.values()], continuation: null };
};

const uncachedRead = Documents.prototype.read;
Documents.prototype.read = function read(options = {}) {
  const key = resultCacheKey(this, "read", "", undefined, options);
  return servePaged(this, key, options.continuation, options.maxItemCount, () => uncachedRead.call(this, options));
};

/* ------------------------------------------------------------------------------------------------ */
/* [E1] Replacing a container kept its properties but dropped all its documents                     */
/* ------------------------------------------------------------------------------------------------ */

// Items#replace stores a brand-new Collection object, whose constructor creates empty Documents /
// UDF / partition key range stores: replace_container (for instance to change defaultTtl or the
// indexing policy) silently emptied the container. Carry the stores over to the new object.
const origCollectionsReplace = Collections.prototype.replace;
Collections.prototype.replace = function replace(data, original) {
  const before = this._item("/id", original.id, original.id);
  const result = origCollectionsReplace.call(this, data, original);
  const after = this._item("/id", data.id, data.id);
  if (before && after && before !== after && before.documents) {
    ["documents", "userDefinedFunctions", "partitionKeyRanges"].forEach(store => {
      after[store] = before[store];
      after[store]._parent = after;
    });
  }
  return result;
};

/* ------------------------------------------------------------------------------------------------ */
/* Request bodies                                                                                   */
/* ------------------------------------------------------------------------------------------------ */

// The package's handlers read the body with lib/json (raw-body + JSON.parse). The wrapper below reads
// and parses it once up front so that checks can look at it before the original handler runs, and
// [E2] malformed JSON answers 400 BadRequest instead of 500. lib/json returns the cached value.
const BODY = Symbol("cosmosParsedBody");
const origJson = jsonModule.default;
jsonModule.default = async req => (req[BODY] !== undefined ? req[BODY] : origJson(req));

async function preloadBody(req) {
  if (req[BODY] !== undefined) return req[BODY];
  if (req.method === "GET" || req.method === "DELETE" || req.method === "HEAD") return undefined;
  let body;
  try {
    body = await origJson(req);
  } catch (err) {
    throw new HttpError(400, `The request body is not valid JSON: ${err.message}`);
  }
  req[BODY] = body === undefined ? null : body;
  return req[BODY];
}

/* ------------------------------------------------------------------------------------------------ */
/* Replacement / wrapped handlers                                                                   */
/* ------------------------------------------------------------------------------------------------ */

function getCollection(account, { dbId, collId }) {
  return account.database(dbId).collection(collId);
}

function collectionOr404(account, params) {
  const collection = getCollection(account, params);
  if (!collection.read()) {
    throw new HttpError(404, `Resource Not Found. Collection '${params.collId}' does not exist.`);
  }
  return collection;
}

/** [D1] GET /docs/:id -- the package crashed (500) when the id / partition did not exist. */
async function readDocument(account, req, res, params) {
  const collection = collectionOr404(account, params);
  const headerArr = requirePkHeader(req, collection.read());
  const data = lookupDocument(collection, params.docId, rawPkHeader(req), headerArr);
  if (!data) return fail(res, 404, NOT_FOUND_MESSAGE);
  return data;
}

/** [D1] PUT / DELETE /docs/:id -- answer 404 NotFound before the package's handler runs. */
function requireExisting(original) {
  return async (account, req, res, params) => {
    const collection = collectionOr404(account, params);
    const headerArr = requirePkHeader(req, collection.read());
    const data = lookupDocument(collection, params.docId, rawPkHeader(req), headerArr);
    if (!data) return fail(res, 404, NOT_FOUND_MESSAGE);
    if (req.method === "PUT") {
      const body = await preloadBody(req);
      checkItemTtl(body);
      // [E3] Cosmos refuses to change the id through a replace; the package replaced body.id instead
      if (!body || body.id !== params.docId) {
        return fail(res, 400, "The id in the request body must match the id of the item being replaced.");
      }
      if (!pkMatches(collection.read(), headerArr, body)) {
        return fail(
          res,
          400,
          "PartitionKey extracted from document doesn't match the one specified in the header."
        );
      }
    }
    return original(account, req, res, params);
  };
}

/**
 * PATCH /docs/:id. [D1] 404 NotFound for a missing id / wrong partition (the package answered 404 with
 * an empty body only by accident of its lookup). [E9] The package evaluates a conditional patch's
 * filter predicate with `SELECT * FROM c WHERE c.id = @id AND (...)` over every partition, so a
 * same-id document of another partition could satisfy it; it is now evaluated in the target's
 * partition only, synchronously so no other request can interleave.
 */
async function patchDocument(account, req, res, params) {
  const collection = collectionOr404(account, params);
  const collData = collection.read();
  const headerArr = requirePkHeader(req, collData);
  const body = await preloadBody(req);
  const data = lookupDocument(collection, params.docId, rawPkHeader(req), headerArr);
  if (!data) return fail(res, 404, NOT_FOUND_MESSAGE);
  const operations = Array.isArray(body) ? body : body && body.operations;
  if (!Array.isArray(operations) || operations.length === 0) {
    return fail(res, 400, "Invalid patch request: check syntax of patch specification.");
  }
  const result = withPartitionScope(
    collection.documents,
    doc => pkMatches(collData, headerArr, doc),
    () =>
      patchOperation(collection, {
        id: params.docId,
        partitionKey: rawPkHeader(req),
        ifMatch: req.headers["if-match"],
        operations,
        condition: Array.isArray(body) ? undefined : body.condition
      })
  );
  res.statusCode = result.statusCode;
  return result.body;
}

/**
 * POST /docs (create) and upsert: [E4] 404 for a missing container (the package threw -> 500),
 * [E5] 400 when the document's partition key differs from the header (as Cosmos does), [D3] ttl check.
 */
function writeChecks(original) {
  return async (account, req, res, params) => {
    const collection = collectionOr404(account, params);
    const body = await preloadBody(req);
    checkItemId(body);
    checkItemTtl(body);
    const headerArr = requirePkHeader(req, collection.read());
    if (!pkMatches(collection.read(), headerArr, body)) {
      return fail(
        res,
        400,
        "PartitionKey extracted from document doesn't match the one specified in the header."
      );
    }
    return original(account, req, res, params);
  };
}

/**
 * [D2] POST /docs query. The package ignored the partition key header (rows of every partition came
 * back) and refused queries whose WHERE clause did not mention the partition key unless the
 * cross-partition header was set. With a single physical partition the gateway can serve any
 * query directly, so: a partition key header scopes the query to that partition; without one the
 * query runs over all partitions.
 */
async function queryDocuments(account, req, res, params) {
  return readItems(req, res, "Documents", async ({ continuation, maxItemCount }) => {
    const body = await jsonModule.default(req);
    if (!body || typeof body.query !== "string" || !body.query.trim()) {
      return fail(res, 400, "missing query");
    }
    const collection = collectionOr404(account, params);
    const collData = collection.read();
    const headerArr = pkHeaderArray(req);
    const filter =
      headerArr && headerArr.length && isPartitioned(collData)
        ? doc => pkMatches(collData, headerArr, doc)
        : null;
    const filterKey = filter ? JSON.stringify(headerArr) : null;
    try {
      const page = collection.documents.query(body, { continuation, maxItemCount, filter, filterKey });
      if (DEBUG_HEADERS) res.setHeader(RESULT_CACHE_HEADER, lastCacheOutcome);
      return page;
    } catch (err) {
      if (err instanceof QuerySyntaxError) throw err; // readItems answers 400 with the parser message
      if (err.badRequest) return fail(res, 400, err.message);
      throw err;
    }
  });
}

/** GET /docs read feed: [D2] honour a partition key header here as well. */
async function readDocuments(account, req, res, params) {
  return readItems(req, res, "Documents", async ({ continuation, maxItemCount }) => {
    const collection = collectionOr404(account, params);
    const collData = collection.read();
    const headerArr = pkHeaderArray(req);
    const filter =
      headerArr && headerArr.length && isPartitioned(collData)
        ? doc => pkMatches(collData, headerArr, doc)
        : null;
    const filterKey = filter ? JSON.stringify(headerArr) : null;
    const page = collection.documents.read({ continuation, maxItemCount, filter, filterKey });
    if (DEBUG_HEADERS) res.setHeader(RESULT_CACHE_HEADER, lastCacheOutcome);
    return page;
  });
}


/* [D4] Transactional batch ------------------------------------------------------------------------ */

const MAX_BATCH_OPERATIONS = 100;

/**
 * [D4] POST /docs with x-ms-cosmos-is-batch-request. The package read the partition key from each
 * operation (`input.partitionKey`), which the Python SDK never sends (it puts it in the request
 * header), so every batch failed with 500; it also left the operations before a failing one applied.
 * This version:
 *   - takes the partition key from the header (an operation's own partitionKey wins if present);
 *   - checks every operation against that partition (Cosmos: one partition key value per batch);
 *   - atomic batches are all-or-nothing: on the first failure the operations already applied are
 *     undone, the failing operation reports its status and every other one 424 FailedDependency, and the
 *     HTTP status is 207 Multi-Status (a 4xx would make the SDK raise CosmosHttpResponseError instead of
 *     CosmosBatchOperationError); success answers 200 with one result per operation;
 *   - supports Patch operations and enforces Cosmos' limit of 100 operations.
 */
async function batchDocuments(account, req, res, params) {
  const collection = collectionOr404(account, params);
  const collData = collection.read();
  const docs = collection.documents;
  const ops = await preloadBody(req);
  if (!Array.isArray(ops)) return fail(res, 400, "Invalid request body: expected an array of operations.");
  if (ops.length === 0) return fail(res, 400, "The batch request did not have any operations to be executed.");
  if (ops.length > MAX_BATCH_OPERATIONS) {
    return fail(
      res,
      400,
      `Batch request has more operations than what is supported (${MAX_BATCH_OPERATIONS}).`
    );
  }
  const rawHeader = rawPkHeader(req);
  const headerArr = requirePkHeader(req, collData);
  const atomic = trueHeader(req, "x-ms-cosmos-batch-atomic") || req.headers["x-ms-cosmos-batch-atomic"] === undefined;
  const continueOnError = trueHeader(req, "x-ms-cosmos-batch-continue-on-error");

  const ridCountBefore = docs._ridCount;
  const undo = []; // [id, rawPk, document before the operation]
  const results = [];
  let failedIndex = -1;

  for (let i = 0; i < ops.length; i += 1) {
    const op = ops[i] || {};
    const opRaw = op.partitionKey !== undefined ? op.partitionKey : rawHeader;
    let opArr = headerArr;
    if (op.partitionKey !== undefined) {
      try {
        opArr = JSON.parse(op.partitionKey);
        if (!Array.isArray(opArr)) opArr = [opArr];
      } catch (err) {
        opArr = null;
      }
    }
    const targetId =
      op.id !== undefined ? op.id : op.resourceBody && op.resourceBody.id !== undefined ? op.resourceBody.id : undefined;
    const before = lookupDocument(collection, targetId, opRaw, opArr);
    let result;
    try {
      result = runBatchOperation(collection, collData, op, opRaw, opArr, before);
    } catch (err) {
      result =
        err instanceof HttpError
          ? { statusCode: err.statusCode, body: errorBody(err.statusCode, err.message, err.code) }
          : { statusCode: err.badRequest ? 400 : 500, body: errorBody(err.badRequest ? 400 : 500, err.message) };
      if (result.statusCode === 500) console.error(err); // eslint-disable-line no-console
    }
    const ok = result.statusCode < 400;
    if (ok && op.operationType !== "Read") undo.push([targetId, opRaw, before]);
    if (ok) {
      const entry = { statusCode: result.statusCode, requestCharge: 1 };
      if (result.body && result.body._etag) entry.eTag = result.body._etag;
      if (result.body && op.operationType !== "Delete") entry.resourceBody = result.body;
      results.push(entry);
    } else {
      results.push({ statusCode: result.statusCode, requestCharge: 0 });
      if (failedIndex < 0) failedIndex = i;
      if (atomic || !continueOnError) {
        for (let j = i + 1; j < ops.length; j += 1) results.push({ statusCode: 424, requestCharge: 0 });
        break;
      }
    }
  }

  if (failedIndex >= 0 && atomic) {
    // undo in reverse order: put back exactly the stored object each operation found
    for (let k = undo.length - 1; k >= 0; k -= 1) {
      const [id, opRaw, before] = undo[k];
      let key = id;
      try {
        key = opRaw === undefined ? id : parsePartitionKey(opRaw, id);
      } catch (err) {
        /* keep id */
      }
      const current = origItem.call(docs, "/id", id, key).read();
      if (current) rawRemove(docs, current);
      if (before) docs._set(before);
    }
    docs._ridCount = ridCountBefore;
    for (let j = 0; j < results.length; j += 1) {
      if (j !== failedIndex) results[j] = { statusCode: 424, requestCharge: 0 };
    }
  }
  res.statusCode = failedIndex >= 0 ? 207 : 200;
  return results;
}

function runBatchOperation(collection, collData, op, opRaw, opArr, before) {
  const type = op.operationType;
  const body = op.resourceBody;
  const precondition = current => {
    if (op.ifMatch && (!current || op.ifMatch !== current._etag)) {
      return { statusCode: 412, body: errorBody(412, PRECONDITION_MESSAGE) };
    }
    if (op.ifNoneMatch && current && (op.ifNoneMatch === "*" || op.ifNoneMatch === current._etag)) {
      return type === "Read"
        ? { statusCode: 304, body: undefined }
        : { statusCode: 412, body: errorBody(412, PRECONDITION_MESSAGE) };
    }
    return null;
  };
  const checkBody = () => {
    checkItemId(body);
    checkItemTtl(body);
    if (!pkMatches(collData, opArr, body)) {
      throw new HttpError(400, "PartitionKey extracted from document doesn't match the one specified in the header.");
    }
  };
  const notFound = { statusCode: 404, body: errorBody(404, NOT_FOUND_MESSAGE) };
  const input = { ...op, partitionKey: opRaw === undefined ? JSON.stringify([null]) : opRaw };

  switch (type) {
    case "Create":
      checkBody();
      return docOps.createOperation(collection, input);
    case "Upsert":
      checkBody();
      // same rules as a single upsert (the package's upsertOperation checks ifMatch on an existing item)
      return docOps.upsertOperation(collection, input);
    case "Read":
      if (!before) return notFound;
      return precondition(before) || { statusCode: 200, body: before };
    case "Delete":
      if (!before) return notFound;
      return precondition(before) || docOps.deleteOperation(collection, input);
    case "Replace":
      checkBody();
      if (op.id !== undefined && op.id !== body.id) {
        throw new HttpError(400, "The id in the operation must match the id of the item being replaced.");
      }
      if (!before) return notFound;
      return precondition(before) || docOps.replaceOperation(collection, input);
    case "Patch": {
      if (!before) return notFound;
      const pre = precondition(before);
      if (pre) return pre;
      const patch = body || {};
      const operations = Array.isArray(patch) ? patch : patch.operations;
      if (!Array.isArray(operations) || operations.length === 0) {
        throw new HttpError(400, "Invalid patch request: check syntax of patch specification.");
      }
      return withPartitionScope(
        collection.documents,
        doc => pkMatches(collData, opArr, doc),
        () =>
          patchOperation(collection, {
            id: op.id,
            partitionKey: input.partitionKey,
            operations,
            condition: Array.isArray(patch) ? undefined : patch.condition
          })
      );
    }
    default:
      throw new HttpError(400, `Operation type '${type}' is not supported in Batch.`);
  }
}

/** Handlers replaced or wrapped, keyed by the package's original handler function. */
const OVERRIDES = new Map([
  [H.readDocument, readDocument],
  [H.replaceDocument, requireExisting(H.replaceDocument)],
  [H.deleteDocument, requireExisting(H.deleteDocument)],
  [H.patchDocument, patchDocument],
  [H.createDocument, writeChecks(H.createDocument)],
  [H.upsertDocument, writeChecks(H.upsertDocument)],
  [H.queryDocuments, queryDocuments],
  [H.readDocuments, readDocuments],
  [H.batchDocuments, batchDocuments]
]);

/**
 * Wraps every handler: [E6] errors get a Cosmos-style body ({"code", "message"}) so the SDK's
 * exceptions carry a status name and text (the package answered `{"message": ""}` or `{}`), known
 * client errors thrown as exceptions become 4xx instead of 500.
 */
let JOURNAL = null; // set by --data-file (devstack/cosmos_journal.js)

function wrapHandler(handler) {
  return async (account, req, res, params) => {
    let body;
    try {
      await preloadBody(req);
      body = await handler(account, req, res, params);
    } catch (err) {
      if (err instanceof HttpError) return fail(res, err.statusCode, err.message, err.code);
      if (err instanceof QuerySyntaxError || err.badRequest) return fail(res, 400, err.message);
      if (/Failed to parse x-ms-documentdb-partitionkey/.test(err.message || "")) {
        return fail(res, 400, err.message);
      }
      throw err; // the package's own handler logs it and answers 500
    }
    // --data-file: a write that succeeded is journaled before its answer goes out.
    if (JOURNAL) JOURNAL.record(req, res.statusCode, req[BODY]);
    if (res.statusCode >= 400) {
      const b = body && typeof body === "object" && !Array.isArray(body) ? body : {};
      return {
        ...b,
        code: b.code || ERROR_CODES[res.statusCode] || "Error",
        message:
          b.message ||
          (res.statusCode === 404 ? "Resource Not Found" : ERROR_CODES[res.statusCode] || "Error")
      };
    }
    return body;
  };
}

// The package's request handler calls `routes_1.default(req)` on every request, so replacing the
// module's export is enough to route every request through the wrappers above.
const origRoute = routesModule.default;
const wrapped = new Map();
routesModule.default = req => {
  // [E7] The SDK only asks for a query plan after a 400/1004 answer, which this server never gives;
  // if something asks anyway, do not let the router take the JSON request for a document create.
  if (trueHeader(req, "x-ms-cosmos-is-query-plan-request")) {
    return [
      {},
      async (account, r, res) => fail(res, 400, "Query plans are not supported by this local server.")
    ];
  }
  const route = origRoute(req);
  if (!route) return route;
  const [params, handler] = route;
  if (!wrapped.has(handler)) wrapped.set(handler, wrapHandler(OVERRIDES.get(handler) || handler));
  return [params, wrapped.get(handler)];
};

/* ------------------------------------------------------------------------------------------------ */
/* Server                                                                                           */
/* ------------------------------------------------------------------------------------------------ */

function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err.message}\n\n${USAGE}`);
    process.exit(2);
  }

  // [D5] The package sets `Connection: close` on every response unless its keepAlive option is set,
  // so every request of the SDK paid a new TCP + TLS handshake (~30 requests/s).
  const server = createHttpsServer({ keepAlive: true });
  // [D7] Node 20's HTTP server stops reading a keep-alive connection when a request arrives while the socket
  // still counts the previous answer as not drained (a large batch or query answer whose write completion
  // the event loop has not processed yet, frequent on a busy machine). On a TLS socket the parser reads the
  // connection natively, so the rest of that request's body reaches a paused parser: "Parse Error: Paused",
  // and the server drops the connection. The SDK saw RemoteDisconnected, and as a transactional batch is
  // not retried, a collection day failed. With a write high-water mark above any answer this server
  // sends, the socket never counts as undrained, so it is never paused. Real Cosmos keeps the connection.
  server.on("secureConnection", socket => {
    // eslint-disable-next-line no-underscore-dangle
    if (socket._writableState) socket._writableState.highWaterMark = 1024 * 1024 * 1024;
  });
  // Keep idle connections longer than Node's 5 s default: a client pool that reuses a connection the
  // server has just timed out sees a reset. Real Cosmos keeps idle connections for minutes.
  server.keepAliveTimeout = 120 * 1000;
  server.headersTimeout = 125 * 1000;

  // The package's own listener, kept before --delay-ms wraps it, for --data-file's replay.
  const packageListener = server.listeners("request")[0];

  // [D6] --delay-ms: hold each request for N ms before the package handles it.
  if (args.delayMs > 0) {
    const listeners = server.listeners("request");
    server.removeAllListeners("request");
    server.on("request", (req, res) => {
      setTimeout(() => listeners.forEach(l => l.call(server, req, res)), args.delayMs);
    });
  }

  let sweeper = null;
  if (args.ttlSweepMs > 0) {
    sweeper = setInterval(sweepExpired, args.ttlSweepMs);
    sweeper.unref();
  }

  server.on("error", err => {
    process.stderr.write(`cosmos server error: ${err.message}\n`);
    process.exit(1);
  });

  server.listen(args.port, args.host, async () => {
    const { port } = server.address();
    const host = args.host.includes(":") ? `[${args.host}]` : args.host;
    if (args.dataFile) {
      // Replay through the package's own request listener (it holds the account, created on "listening"),
      // before announcing readiness: the stack script waits for the line below.
      const { Journal } = require("./cosmos_journal");
      const journal = new Journal(args.dataFile);
      const listener = packageListener || server.listeners("request")[0];
      const replayed = await journal.replay((req, res) => listener.call(server, req, res), BODY);
      JOURNAL = journal;
      process.stdout.write(`cosmos replayed ${replayed} writes from ${args.dataFile}\n`);
    }
    process.stdout.write(`cosmos listening on https://${host}:${port}\n`);
  });

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    if (sweeper) clearInterval(sweeper);
    server.close(() => process.exit(0));
    // keep-alive connections would otherwise hold close() open until they time out
    server.closeIdleConnections();
    setTimeout(() => {
      server.closeAllConnections();
      process.exit(0);
    }, 1000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (require.main === module) {
  main();
}
