#!/usr/bin/env node
import { Command } from 'commander';
import { ConfigError, loadConfigFile } from './config/loader';
import type { Config } from './config/schema';
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { adminBaseUrl, AdminApiClient, type KeyOperations } from './admin/api-client';
import { backupHeader, backupText, parseBackup } from './admin/backup';
import { KeyService, type KeyWithSecret } from './admin/key-service';
import { checkInput, createKeyInput, updateKeyInput, type InputProblem } from './admin/validation';
import type { KeyUsage, WindowUsage } from './admin/key-service';
import type { PublicKey } from './keys/types';
import { RedisLimiter } from './ratelimit/redis-limiter';
import { formatWindow } from './config/duration';
import { startGateway } from './main';
import { withRedisKeyStore } from './backends';
import { initialiseStore } from './keys/store-init';
import { createLogger } from './log';
import { packageVersion } from './version';
import { runPrimary } from './cluster/primary';
import { runWorker } from './cluster/worker';
import { parseWorkers, workersProblem } from './cluster/workers';

/** Loads and validates a config, or prints every problem with its path and exits 1. */
function loadConfigOrExit(file: string): Config {
  try {
    return loadConfigFile(file);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(err.message);
    process.exit(1);
  }
}

function fail(message: string): never {
  console.error(`sluice: ${message}`);
  process.exit(1);
}

/** The Redis key store through the same KeyService as the admin API (changes reach every replica at once). */
function withRedisKeys<T>(config: Config, run: (service: KeyService) => Promise<T>): Promise<T> {
  return withRedisKeyStore(config, (store, events) => {
    // A limiter on the same connection, for usage reports (read-only: they count nothing).
    const limiter = new RedisLimiter(store.client, config.store.redis!.key_prefix);
    return run(new KeyService({ store, events, config: () => config, limiter }));
  });
}

/**
 * Key commands: on the Redis store directly, or, with the embedded store (whose keys live inside the
 * gateway process), through the running gateway's admin API, found with the same config file.
 */
async function withKeys<T>(configFile: string, run: (keys: KeyOperations, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfigOrExit(configFile);
  if (config.store.redis) return withRedisKeys(config, (service) => run(service, config));
  if (!config.admin.token) {
    fail(
      'this config uses the embedded in-memory key store (no store.redis): its keys live inside the running gateway and ' +
        'the CLI reaches them through its admin API, which needs admin.token. Set admin.token, or configure store.redis.',
    );
  }
  if (config.admin.port === 0) fail('admin.port is 0 (any free port): the CLI cannot find the running gateway; set a fixed admin.port');
  const client = new AdminApiClient(adminBaseUrl(config), config.admin.token, config.admin.tls?.cert_file);
  try {
    return await run(client, config);
  } finally {
    await client.close();
  }
}

/** Backups hold hashes, which only the Redis store gives out (never the HTTP API). */
function redisOnly(configFile: string, command: string): Config {
  const config = loadConfigOrExit(configFile);
  if (!config.store.redis) {
    fail(`keys ${command} works on the Redis key store; the embedded store lives only in the gateway's memory (seed keys under \`keys:\` instead)`);
  }
  return config;
}

/** "100/1m,5000/1d" → [{requests: 100, per: "1m"}, …]; the API's validation judges the values. */
function parseLimitsOption(text: string): unknown {
  return text.split(',').map((item) => item.trim()).filter(Boolean).map((item) => {
    const match = /^([0-9]+)\/(\S+)$/.exec(item);
    if (!match) fail(`--limits must be a comma-separated list like 100/1m,5000/1d (got an item that is not REQUESTS/WINDOW)`);
    return { requests: Number(match[1]), per: match[2] };
  });
}

/** A problem of an input named as the option that carries it: `limits[0].per` → --limits. */
function optionProblem(problem: InputProblem): never {
  fail(`--${problem.field.replace(/[[.].*$/, '').replace(/_/g, '-')} must be ${problem.requirement}`);
}

function describeKey(shown: PublicKey): string[] {
  const lines = [`${shown.id}  ${shown.status}  tier ${shown.tier}  "${shown.name}"`];
  if (shown.account) lines.push(`account: ${shown.account}`);
  lines.push(`scopes: ${shown.scopes ? shown.scopes.join(', ') : "(the tier's)"}`);
  lines.push(`limits: ${shown.limits ? shown.limits.map((l) => `${l.requests}/${l.per}`).join(', ') : "(the tier's)"}`);
  for (const field of ['created_at', 'updated_at', 'expires_at', 'rotated_at', 'revoked_at'] as const) {
    if (shown[field]) lines.push(`${field.replace('_at', '')}: ${shown[field]}`);
  }
  return lines;
}

function describeUsage(usage: KeyUsage): string[] {
  const line = (kind: string, w: WindowUsage) =>
    `  ${kind.padEnd(8)} ${w.window.padEnd(15)} ${String(w.used).padStart(8)} / ${String(w.limit).padEnd(8)} resets ${new Date(w.reset * 1000).toISOString()}${w.mode === 'shadow' ? '  (shadow)' : ''}`;
  const lines = ['usage:'];
  for (const w of usage.windows) lines.push(line('key', w));
  for (const w of usage.account_windows) lines.push(line('account', w));
  if (usage.quota) lines.push(line('quota', usage.quota));
  const slots = usage.concurrency;
  if (slots) lines.push(`  ${'slots'.padEnd(8)} ${'in flight'.padEnd(15)} ${String(slots.in_flight).padStart(8)} / ${slots.limit}${slots.mode === 'shadow' ? '  (shadow)' : ''}`);
  if (lines.length === 1) lines.push('  (no limits)');
  return lines;
}

const shortKey = (created: KeyWithSecret) => JSON.stringify({ id: created.id, key: created.key, tier: created.tier, name: created.name });

const program = new Command()
  .name('sluice')
  .description('sluice, a distributed API gateway')
  .version(packageVersion(), '-V, --version', 'print the version')
  .showHelpAfterError();

/** `--workers` as a number, or exits 1 saying why this config cannot have that many. */
function workersOrExit(text: string, config: Config): number {
  const workers = parseWorkers(text);
  if (workers === undefined) fail(`--workers must be a whole number from 1 or "auto", not "${text}"`);
  const problem = workersProblem(config, workers);
  if (problem) fail(problem);
  return workers;
}

const WORKERS_HELP = 'processes sharing the public port (node:cluster), "auto" = one per core; more than 1 needs store.redis';

program
  .command('serve')
  .description('start a gateway replica')
  .requiredOption('-c, --config <file>', 'gateway YAML config')
  .option('-w, --workers <n|auto>', WORKERS_HELP, '1')
  .action(async (opts: { config: string; workers: string }) => {
    const config = loadConfigOrExit(opts.config);
    const workers = workersOrExit(opts.workers, config);
    // Each worker runs this same command (cluster.fork): the primary forks, the workers serve.
    if (workers > 1) return cluster.isPrimary ? runPrimary(opts.config, config, workers) : runWorker(opts.config, config);
    const gateway = await startGateway(config, createLogger(config.log.level), { configFile: opts.config });
    process.on('SIGHUP', () => gateway.reload());
    const stop = (signal: string) => {
      gateway.log.info({ signal }, 'shutdown requested');
      void gateway.shutdown().then(() => process.exit(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });

const configCommand = program.command('config').description('work with config files');
configCommand
  .command('check <file>')
  .description('validate a config file; exits 0 when valid, 1 with each problem otherwise')
  .option('-w, --workers <n|auto>', `also check it can run with this many workers (${WORKERS_HELP})`)
  .action((file: string, opts: { workers?: string }) => {
    const config = loadConfigOrExit(file);
    if (opts.workers !== undefined) workersOrExit(opts.workers, config);
    console.log(`${file}: OK`);
  });

const store = program.command('store').description('the key store');
store
  .command('init')
  .description('declare the Redis key store new, on purpose: create the seed keys and its marker (a no-op on an initialised store)')
  .requiredOption('-c, --config <file>', 'gateway YAML config (names the key store)')
  .action(async (opts: { config: string }) => {
    const config = loadConfigOrExit(opts.config);
    if (!config.store.redis) {
      console.log('This config uses the embedded in-memory key store: it is new on every start and initialises itself. Nothing to do.');
      return;
    }
    const outcome = await withRedisKeyStore(config, (keyStore) => initialiseStore(keyStore, config));
    if (!outcome.initialised) console.log('The key store is already initialised (its marker is there). Nothing changed.');
    else console.log(`Initialised the key store: ${outcome.seeded} seed key(s) from the config created, marker written. Replicas become ready within about a second.`);
  });

const keys = program.command('keys').description('manage API keys (Redis store directly; embedded store through the running gateway)');
keys
  .command('create')
  .description('create an API key and print it once')
  .requiredOption('-c, --config <file>', 'gateway YAML config (names the key store)')
  .requiredOption('--tier <tier>', 'tier of the key')
  .requiredOption('--name <name>', 'a name for people')
  .option('--scopes <list>', 'comma-separated scopes, a subset of the tier\'s')
  .option('--expires-at <iso>', 'expiry time, ISO 8601 with a time zone (2027-01-01T00:00:00Z)')
  .option('--account <name>', "the customer the key belongs to (shares the tier's account_limits; cannot be changed later)")
  .option('--limits <list>', "the key's own windows instead of its tier's, e.g. 100/1m,5000/1d")
  .option('--json', 'print {"id","key","tier","name"}')
  .action(async (opts: { config: string; tier: string; name: string; scopes?: string; expiresAt?: string; account?: string; limits?: string; json?: boolean }) => {
    await withKeys(opts.config, async (keyOps) => {
      const scopes = opts.scopes?.split(',').map((s) => s.trim()).filter(Boolean);
      const limits = opts.limits === undefined ? undefined : parseLimitsOption(opts.limits);
      const checked = checkInput(createKeyInput, { name: opts.name, tier: opts.tier, scopes, expires_at: opts.expiresAt, account: opts.account, limits });
      if ('problem' in checked) optionProblem(checked.problem);
      const created = await keyOps.create(checked.value);
      if (opts.json) console.log(shortKey(created));
      else console.log(`Created ${created.id} (name "${created.name}", tier ${created.tier}).\nAPI key (shown once, store it now): ${created.key}`);
    });
  });

keys
  .command('list')
  .description('list keys (never their secrets)')
  .requiredOption('-c, --config <file>', 'gateway YAML config')
  .option('--json', 'one JSON object per line')
  .action(async (opts: { config: string; json?: boolean }) => {
    await withKeys(opts.config, async (keyOps) => {
      let cursor: string | null = null;
      do {
        const page = await keyOps.list(cursor === null ? { limit: 500 } : { limit: 500, cursor });
        for (const shown of page.keys) {
          if (opts.json) console.log(JSON.stringify(shown));
          else console.log(`${shown.id}\t${shown.status}\t${shown.tier}\t${shown.name}${shown.expires_at ? `\texpires ${shown.expires_at}` : ''}`);
        }
        cursor = page.next_cursor;
      } while (cursor !== null);
    });
  });

keys
  .command('update <id>')
  .description("change a key's tier, own limits, name, scopes or expiry (every replica applies it within a second)")
  .requiredOption('-c, --config <file>', 'gateway YAML config')
  .option('--tier <tier>', 'new tier (every key of its account must move with it)')
  .option('--limits <list>', `the key's own windows, e.g. 100/1m,5000/1d; "tier" for its tier's again`)
  .option('--name <name>', 'new name')
  .option('--scopes <list>', `comma-separated scopes; "tier" for its tier's again`)
  .option('--expires-at <iso>', 'new expiry, ISO 8601 with a time zone; "never" for none')
  .option('--json', 'print the key as JSON')
  .action(async (id: string, opts: { config: string; tier?: string; limits?: string; name?: string; scopes?: string; expiresAt?: string; json?: boolean }) => {
    await withKeys(opts.config, async (keyOps) => {
      const patch: Record<string, unknown> = {};
      if (opts.tier !== undefined) patch.tier = opts.tier;
      if (opts.name !== undefined) patch.name = opts.name;
      if (opts.limits !== undefined) patch.limits = opts.limits === 'tier' ? null : parseLimitsOption(opts.limits);
      if (opts.scopes !== undefined) patch.scopes = opts.scopes === 'tier' ? null : opts.scopes.split(',').map((s) => s.trim()).filter(Boolean);
      if (opts.expiresAt !== undefined) patch.expires_at = opts.expiresAt === 'never' ? null : opts.expiresAt;
      if (Object.keys(patch).length === 0) fail('nothing to change: give at least one of --tier, --limits, --name, --scopes, --expires-at');
      const checked = checkInput(updateKeyInput, patch);
      if ('problem' in checked) optionProblem(checked.problem);
      const updated = await keyOps.update(id, checked.value);
      if (opts.json) console.log(JSON.stringify(updated));
      else console.log([`Updated ${id}. Every replica applies it within about a second.`, ...describeKey(updated)].join('\n'));
    });
  });

keys
  .command('show <id>')
  .description('print a key (never its secret) and its usage: its windows, its account\'s and its quota period')
  .requiredOption('-c, --config <file>', 'gateway YAML config')
  .option('--json', 'print {"key": …, "usage": …}')
  .action(async (id: string, opts: { config: string; json?: boolean }) => {
    await withKeys(opts.config, async (keyOps) => {
      const shown = await keyOps.get(id);
      const usage = await keyOps.usage(id);
      if (opts.json) console.log(JSON.stringify({ key: shown, usage }));
      else console.log([...describeKey(shown), ...describeUsage(usage)].join('\n'));
    });
  });

keys
  .command('rotate <id>')
  .description('give a key a new secret (printed once); the old one keeps working for admin.rotation_grace')
  .requiredOption('-c, --config <file>', 'gateway YAML config')
  .option('--json', 'print {"id","key","tier","name"}')
  .action(async (id: string, opts: { config: string; json?: boolean }) => {
    await withKeys(opts.config, async (keyOps, config) => {
      const rotated = await keyOps.rotate(id);
      if (opts.json) console.log(shortKey(rotated));
      else {
        const grace = config.admin.rotation_grace;
        console.log(`Rotated ${id}.\nNew API key (shown once, store it now): ${rotated.key}`);
        console.log(grace > 0 ? `The previous key keeps working for ${formatWindow(grace)}.` : 'The previous key no longer works.');
      }
    });
  });

keys
  .command('revoke <id>')
  .description('revoke a key (kept for audit)')
  .requiredOption('-c, --config <file>', 'gateway YAML config')
  .action(async (id: string, opts: { config: string }) => {
    await withKeys(opts.config, async (keyOps) => {
      await keyOps.revoke(id);
      console.log(`Revoked ${id}. Every replica stops accepting it within about a second.`);
    });
  });

keys
  .command('export')
  .description('write every key (metadata and SHA-256 hashes, never a plaintext key) as JSON lines to stdout')
  .requiredOption('-c, --config <file>', 'gateway YAML config (names the Redis store)')
  .action(async (opts: { config: string }) => {
    await withRedisKeys(redisOnly(opts.config, 'export'), async (service) => {
      console.log(backupHeader());
      for await (const record of service.exportRecords()) console.log(JSON.stringify(record));
    });
  });

keys
  .command('import <file>')
  .description('restore keys from an export ("-" reads stdin) into the Redis store, and its marker')
  .requiredOption('-c, --config <file>', 'gateway YAML config (names the Redis store)')
  .action(async (file: string, opts: { config: string }) => {
    const config = redisOnly(opts.config, 'import');
    let records;
    try {
      records = parseBackup(backupText(readFileSync(file === '-' ? 0 : file)));
    } catch (err) {
      fail(`${file}: ${(err as Error).message}; nothing was imported`);
    }
    await withRedisKeys(config, async (service) => {
      let failed = 0;
      for (const record of records) {
        try {
          await service.importRecord(record);
        } catch (err) {
          failed++;
          console.error(`sluice: ${record.id}: ${(err as Error).message}`);
        }
      }
      await service.restoreMarker();
      console.log(`Imported ${records.length - failed} of ${records.length} keys.`);
      if (failed > 0) process.exitCode = 1;
    });
  });

program.parseAsync().catch((err: unknown) => fail((err as Error).message));
