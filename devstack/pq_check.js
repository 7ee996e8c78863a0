// Parses Power Query (M) files with Microsoft's own parser and reports each file's result as one JSON line:
//   node devstack/pq_check.js file.pq ...   ->  {"file": ..., "ok": true} or {"file": ..., "ok": false, "error": ...}
// Exit code 1 when any file fails to parse.
"use strict";
const fs = require("fs");
const PQP = require("@microsoft/powerquery-parser");

async function check(file) {
  const text = fs.readFileSync(file, "utf8");
  const task = await PQP.TaskUtils.tryLexParse(PQP.DefaultSettings, text);
  if (PQP.TaskUtils.isParseStageOk(task)) return { file, ok: true };
  const error = task.error || (task.lexError ?? task.parseError);
  return { file, ok: false, error: String(error && error.message ? error.message : JSON.stringify(task.stage)) };
}

(async () => {
  let failed = 0;
  for (const file of process.argv.slice(2)) {
    const result = await check(file);
    if (!result.ok) failed += 1;
    console.log(JSON.stringify(result));
  }
  process.exit(failed ? 1 : 0);
})();
