// pg-boss's side of bench/compare_pg_queues.sh: enqueues JOBS no-op jobs with insert() in
// batches of ENQ_BATCH, then runs WORKERS work() loops, each fetching batches of up to BATCH
// jobs (pg-boss completes a fetched batch in one statement), until no job is unfinished.
// Prints: jobs N enqueue_s E work_s W total_s T jobs_per_s J
// usage: node pg_boss_burndown.js URL JOBS WORKERS BATCH ENQ_BATCH
const PgBoss = require('pg-boss');
const { Pool } = require('pg');

const [url, jobs, workers, batch, enqBatch] = [
  process.argv[2], ...process.argv.slice(3, 7).map(Number)];

(async () => {
  const boss = new PgBoss({ connectionString: url, max: workers + 4, schedule: false,
                            supervise: false });
  boss.on('error', (e) => console.error(e));
  await boss.start();
  await boss.createQueue('noop');
  const pool = new Pool({ connectionString: url, max: 1 });
  const t0 = process.hrtime.bigint();
  for (let done = 0; done < jobs; done += enqBatch) {
    const specs = [];
    for (let i = 0; i < enqBatch && done + i < jobs; ++i) specs.push({ name: 'noop', data: {} });
    await boss.insert(specs);
  }
  const t1 = process.hrtime.bigint();
  let handled = 0;
  let allHandled;
  const handledAll = new Promise((resolve) => { allHandled = resolve; });
  for (let w = 0; w < workers; ++w) {
    // The shortest polling interval pg-boss allows (it waits out the rest of the interval
    // after each fetch).
    await boss.work('noop', { batchSize: batch, pollingIntervalSeconds: 0.5 }, async (js) => {
      handled += js.length;
      if (handled >= jobs) allHandled();
    });
  }
  await handledAll;
  // Done when every completion is committed (pg-boss completes after the handler returns).
  for (;;) {
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM pgboss.job WHERE name = 'noop' AND state <> 'completed'");
    if (rows[0].n === 0) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  const t2 = process.hrtime.bigint();
  await boss.stop({ graceful: false, wait: true });
  await pool.end();
  const s = (a, b) => Number(b - a) / 1e9;
  console.log(`jobs ${jobs} enqueue_s ${s(t0, t1).toFixed(3)} work_s ${s(t1, t2).toFixed(3)} ` +
              `total_s ${s(t0, t2).toFixed(3)} jobs_per_s ${(jobs / s(t0, t2)).toFixed(0)}`);
})().catch((e) => { console.error(e); process.exit(1); });
