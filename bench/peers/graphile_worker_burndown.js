// graphile-worker's side of bench/compare_pg_queues.sh: enqueues JOBS no-op jobs with addJobs
// in batches of ENQ_BATCH, then runs one worker pool (concurrency WORKERS, local queue of BATCH
// jobs fetched and locked at once, completions batched) until the jobs table is empty.
// Prints: jobs N enqueue_s E work_s W total_s T jobs_per_s J
// usage: node graphile_worker_burndown.js URL JOBS WORKERS BATCH ENQ_BATCH
const { run, makeWorkerUtils } = require('graphile-worker');
const { Pool } = require('pg');

const [url, jobs, workers, batch, enqBatch] = [
  process.argv[2], ...process.argv.slice(3, 7).map(Number)];

(async () => {
  const pool = new Pool({ connectionString: url, max: workers + 4 });
  pool.on('error', (e) => console.error(e));
  pool.on('connect', (client) => client.on('error', (e) => console.error(e)));
  const utils = await makeWorkerUtils({ pgPool: pool });
  await utils.migrate();
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < jobs; done += enqBatch) {
    const specs = [];
    for (let i = 0; i < enqBatch && done + i < jobs; ++i) specs.push({ identifier: 'noop', payload: {} });
    await utils.addJobs(specs);
  }
  const t1 = process.hrtime.bigint();
  let handled = 0;
  let allHandled;
  const handledAll = new Promise((resolve) => { allHandled = resolve; });
  const runner = await run({
    pgPool: pool,
    concurrency: workers,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: new (require('graphile-worker').Logger)(() => () => {}),
    taskList: { noop: async () => { if (++handled === jobs) allHandled(); } },
    preset: { worker: { localQueue: { size: batch }, completeJobBatchDelay: 0 } },
  });
  await handledAll;
  // Done when every completion is committed (batched completions flush after the handler).
  for (;;) {
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM graphile_worker.jobs');
    if (rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const t2 = process.hrtime.bigint();
  await runner.stop();
  await utils.release();
  await pool.end();
  const s = (a, b) => Number(b - a) / 1e9;
  console.log(`jobs ${jobs} enqueue_s ${s(t0, t1).toFixed(3)} work_s ${s(t1, t2).toFixed(3)} ` +
              `total_s ${s(t0, t2).toFixed(3)} jobs_per_s ${(jobs / s(t0, t2)).toFixed(0)}`);
})().catch((e) => { console.error(e); process.exit(1); });
