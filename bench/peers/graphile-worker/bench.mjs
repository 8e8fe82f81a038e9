// Drain-throughput harness for graphile-worker, run beside solidq's
// `examples/bench.rs --scenario drain` on the same server. See ../README.md for the protocol.
//
// 1. runMigrations, then empty graphile_worker._private_jobs.
// 2. Seed N no-op jobs with one call of the library's bulk SQL API, graphile_worker.add_jobs;
//    timed -> enqueue_per_s.
// 3. Run one worker pool with CONCURRENCY concurrent jobs and, if LOCALQ > 0, a local queue of
//    that size (with batched completions).
// 4. Clock from the start of the pool until the handler has run N times -> drain_per_s (as in
//    the harness the published figures came from); then until the table is empty, i.e. every
//    completion is written -> drain_db_per_s.
// 5. Print one JSON line, nothing else (the library's logger is silenced).
import { run, runMigrations, Logger } from "graphile-worker";
import pg from "pg";

const setting = (name, fallback) => {
  const value = process.env[name];
  if (value === undefined || value === "") return fallback;
  const number = Number(value);
  if (!Number.isFinite(number)) throw new Error(`${name}=${value} is not a number`);
  return number;
};

const connectionString =
  process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/gw_bench";
const jobs = setting("N", 100000);
const concurrency = setting("CONCURRENCY", 24);
const localQueueSize = setting("LOCALQ", 500);
const timeoutMs = setting("TIMEOUT_S", 600) * 1000;

const silent = new Logger(() => () => {});
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (since) => (performance.now() - since) / 1000;

await runMigrations({ connectionString, logger: silent });
const db = new pg.Client({ connectionString });
await db.connect();
await db.query("DELETE FROM graphile_worker._private_jobs");
const remaining = async () =>
  Number((await db.query("SELECT count(*) FROM graphile_worker._private_jobs")).rows[0].count);

// Seed, timed: one add_jobs call with N job specs built on the server.
let started = performance.now();
await db.query(
  `SELECT graphile_worker.add_jobs(ARRAY(
     SELECT json_populate_record(NULL::graphile_worker.job_spec,
              json_build_object('identifier', 'noop', 'payload', json_build_object('i', i)))
     FROM generate_series(1, $1::int) AS i))`,
  [jobs],
);
const enqueueSeconds = seconds(started);
if ((await remaining()) !== jobs) throw new Error("seeded row count differs from N");

// Drain.
let handled = 0;
let allHandled;
const handledN = new Promise((resolve) => (allHandled = resolve));
const worker =
  localQueueSize > 0
    ? { localQueue: { size: localQueueSize }, completeJobBatchDelay: 0, failJobBatchDelay: 0 }
    : {};
started = performance.now();
const runner = await run({
  connectionString,
  concurrency,
  pollInterval: 1000,
  noHandleSignals: true,
  logger: silent,
  preset: { worker },
  taskList: {
    noop: async () => {
      if (++handled === jobs) allHandled();
    },
  },
});
const timedOut = sleep(timeoutMs).then(() => "timeout");
const outcome = await Promise.race([handledN, timedOut]);
const handledSeconds = seconds(started);
let left = await remaining();
while (left > 0 && outcome !== "timeout" && performance.now() - started < timeoutMs) {
  await sleep(10);
  left = await remaining();
}
const dbSeconds = seconds(started);

await runner.stop();
await db.end();
console.log(
  JSON.stringify({
    peer: "graphile-worker",
    jobs,
    concurrency,
    local_queue: localQueueSize > 0 ? localQueueSize : 0,
    enqueue_per_s: Math.round(jobs / enqueueSeconds),
    drain_per_s: handled >= jobs ? Math.round(jobs / handledSeconds) : 0,
    drain_db_per_s: left === 0 ? Math.round(jobs / dbSeconds) : 0,
    left,
  }),
);
process.exit(handled >= jobs && left === 0 ? 0 : 1);
