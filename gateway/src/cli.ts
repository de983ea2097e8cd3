#!/usr/bin/env node
import { Command } from 'commander';
import { ConfigError, loadConfigFile } from './config/loader';
import type { Config } from './config/schema';
import { startGateway } from './main';
import { checkKeyAgainstTiers, toPublicKey } from './store/keys';
import { connectKeyStore, openKeyStore } from './store/open';
import { createLogger } from './log';
import type { KeyStore } from './store/types';

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

/** The key commands work on the Redis store named in the config; embedded keys live inside the gateway. */
async function withRedisStore<T>(configFile: string, run: (store: KeyStore, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfigOrExit(configFile);
  if (!config.store.redis) {
    fail(
      'this config uses the embedded in-memory key store (no store.redis), so its keys live inside the running ' +
        'gateway process and the CLI cannot reach them. Seed keys under `keys:` in the YAML, or configure store.redis.',
    );
  }
  const store = openKeyStore(config);
  try {
    if (!(await connectKeyStore(store, createLogger('silent'), Math.max(config.store.timeout_ms, 3000)))) {
      fail('cannot reach the Redis key store named in the config');
    }
    return await run(store, config);
  } finally {
    await store.close();
  }
}

const program = new Command()
  .name('sluice')
  .description('sluice, a distributed API gateway')
  .showHelpAfterError();

program
  .command('serve')
  .description('start a gateway replica')
  .requiredOption('-c, --config <file>', 'gateway YAML config')
  .action(async (opts: { config: string }) => {
    const config = loadConfigOrExit(opts.config);
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
  .action((file: string) => {
    loadConfigOrExit(file);
    console.log(`${file}: OK`);
  });

const keys = program.command('keys').description('manage API keys in the Redis key store');
keys
  .command('create')
  .description('create an API key and print it once')
  .requiredOption('-c, --config <file>', 'gateway YAML config (names the Redis store)')
  .requiredOption('--tier <tier>', 'tier of the key')
  .requiredOption('--name <name>', 'a name for people')
  .option('--scopes <list>', 'comma-separated scopes, a subset of the tier\'s')
  .option('--expires-at <iso>', 'expiry time, ISO 8601')
  .option('--json', 'print {"id","key","tier","name"}')
  .action(async (opts: { config: string; tier: string; name: string; scopes?: string; expiresAt?: string; json?: boolean }) => {
    await withRedisStore(opts.config, async (store, config) => {
      const scopes = opts.scopes?.split(',').map((s) => s.trim()).filter(Boolean);
      const problem = checkKeyAgainstTiers(config.tiers, { tier: opts.tier, scopes });
      if (problem) fail(problem.message);
      if (opts.expiresAt !== undefined && !(Date.parse(opts.expiresAt) > Date.now())) fail('--expires-at must be a future ISO 8601 time');
      const { record, key } = await store.create({
        name: opts.name,
        tier: opts.tier,
        scopes,
        expires_at: opts.expiresAt && new Date(opts.expiresAt).toISOString(),
      });
      if (opts.json) console.log(JSON.stringify({ id: record.id, key, tier: record.tier, name: record.name }));
      else console.log(`Created ${record.id} (name "${record.name}", tier ${record.tier}).\nAPI key (shown once, store it now): ${key}`);
    });
  });

keys
  .command('list')
  .description('list keys (never their secrets)')
  .requiredOption('-c, --config <file>', 'gateway YAML config')
  .option('--json', 'one JSON object per line')
  .action(async (opts: { config: string; json?: boolean }) => {
    await withRedisStore(opts.config, async (store) => {
      for (const record of await store.list()) {
        const shown = toPublicKey(record);
        if (opts.json) console.log(JSON.stringify(shown));
        else console.log(`${shown.id}\t${shown.status}\t${shown.tier}\t${shown.name}${shown.expires_at ? `\texpires ${shown.expires_at}` : ''}`);
      }
    });
  });

keys
  .command('revoke <id>')
  .description('revoke a key (kept for audit)')
  .requiredOption('-c, --config <file>', 'gateway YAML config')
  .action(async (id: string, opts: { config: string }) => {
    await withRedisStore(opts.config, async (store) => {
      if (!(await store.revoke(id))) fail(`no key with id ${id}`);
      console.log(`Revoked ${id}. Replicas stop accepting it when their cache entry expires (store.cache.ttl).`);
    });
  });

program.parseAsync().catch((err: unknown) => fail((err as Error).message));
