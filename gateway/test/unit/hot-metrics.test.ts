import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client';
import { HotHistogram, hotCounter } from '../../src/metrics/hot';

// The request path's metrics must expose exactly what prom-client's own would for the same events.
const BUCKETS = [0.001, 0.01, 0.1, 1];
const VALUES = [0, 0.0005, 0.001, 0.0010001, 0.05, 0.1, 0.5, 1, 2, 30, 1e-9];

function histograms(name: string) {
  const theirs = new Registry();
  const ours = new Registry();
  const config = { name, help: 'Time taken, by route.', labelNames: ['route'] as const, buckets: BUCKETS };
  return {
    theirs,
    ours,
    reference: new Histogram({ ...config, registers: [theirs] }),
    hot: new HotHistogram({ ...config, registers: [ours] }),
  };
}

describe('HotHistogram', () => {
  it('exposes the same text as prom-client for the same observations (boundaries, +Inf, sum, count)', async () => {
    const { theirs, ours, reference, hot } = histograms('t_seconds');
    for (const [i, value] of VALUES.entries()) {
      const route = i % 3 === 0 ? 'users' : 'orders';
      reference.labels(route).observe(value);
      hot.labels(route).observe(value);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('t_seconds_bucket{le="+Inf",route="orders"} 7');
  });

  it('zero() exports a series before its first observation and resets one that has some, as prom-client does', async () => {
    const { theirs, ours, reference, hot } = histograms('z_seconds');
    for (const h of [reference, hot]) h.zero({ route: 'idle' });
    expect(await ours.metrics()).toBe(await theirs.metrics());
    expect(await ours.metrics()).toContain('z_seconds_count{route="idle"} 0');
    for (const h of [reference, hot]) {
      h.labels('busy').observe(0.2);
      h.zero({ route: 'busy' });
      h.labels('busy').observe(0.003);
    }
    expect(await ours.metrics()).toBe(await theirs.metrics());
  });

  it('refuses what prom-client refuses: a value that is not a number, the wrong number of labels', () => {
    const { hot } = histograms('r_seconds');
    expect(() => hot.labels('a').observe(Number.NaN)).toThrow(TypeError);
    expect(() => hot.labels('a', 'b')).toThrow(/label values/);
    expect(() => hot.labels()).toThrow(/label values/);
  });

  it('adds up across workers as prom-client histograms do (AggregatorRegistry)', async () => {
    const workers = [histograms('w_seconds'), histograms('w_seconds')];
    workers[0].hot.labels('users').observe(0.005);
    workers[1].hot.labels('users').observe(0.5);
    workers[0].reference.labels('users').observe(0.005);
    workers[1].reference.labels('users').observe(0.5);
    const sum = async (registries: Registry[]) => AggregatorRegistry.aggregate(await Promise.all(registries.map((r) => r.getMetricsAsJSON()))).metrics();
    const ours = await sum(workers.map((w) => w.ours));
    expect(ours).toBe(await sum(workers.map((w) => w.theirs)));
    expect(ours).toContain('w_seconds_count{route="users"} 2');
  });
});

describe('hotCounter', () => {
  it("hands its children's counts to the prom-client counter whenever the registry is read, once", async () => {
    const registry = new Registry();
    const hot = hotCounter(['route', 'status']);
    new Counter({ name: 'c_total', help: 'Requests.', labelNames: ['route', 'status'], registers: [registry], collect() { hot.flush(this); } }); // prettier-ignore
    hot.by('users', '200').inc();
    hot.by('users', '200').inc();
    hot.by('users', '503').inc(3);
    let text = await registry.metrics();
    expect(text).toContain('c_total{route="users",status="200"} 2');
    expect(text).toContain('c_total{route="users",status="503"} 3');
    text = await registry.metrics(); // read again: nothing counted twice
    expect(text).toContain('c_total{route="users",status="200"} 2');
    hot.by('users', '200').inc();
    expect(await registry.metrics()).toContain('c_total{route="users",status="200"} 3');
    expect(() => hot.by('users')).toThrow(/label values/);
  });
});
