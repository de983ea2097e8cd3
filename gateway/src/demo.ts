import { randomBytes } from 'node:crypto';
import { Command } from 'commander';
import { ConfigError, loadConfigFile } from './config/loader';
import type { Config } from './config/schema';
import { startDemoUpstream } from './demo-upstream';
import { startGateway } from './main';
import { effectiveScopes } from './pipeline/authorize';

// `npm start`: a demo upstream on every loopback target of the config, the gateway, and a demo key.

function loopbackTargets(config: Config): URL[] {
  const urls = Object.values(config.upstreams).flatMap((u) => u.targets.map((t) => new URL(t)));
  const unique = new Map(urls.map((u) => [u.host, u]));
  return [...unique.values()].filter((u) => ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname));
}

/** A host a local client can reach: a wildcard listener is reached on loopback. */
function reachable(host: string): string {
  return host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
}

async function main(): Promise<void> {
  const opts = new Command().requiredOption('-c, --config <file>').parse().opts<{ config: string }>();
  // The example config has no default admin token (a guessable default would end up in production):
  // without SLUICE_ADMIN_TOKEN the demo makes a random one for this run and prints it.
  const generatedToken = process.env.SLUICE_ADMIN_TOKEN ? undefined : randomBytes(32).toString('hex');
  if (generatedToken) process.env.SLUICE_ADMIN_TOKEN = generatedToken;
  let config: Config;
  try {
    config = loadConfigFile(opts.config);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }

  const upstreams = await Promise.all(loopbackTargets(config).map((u) => startDemoUpstream(u.hostname.replace(/[[\]]/g, ''), Number(u.port || 80))));
  const gateway = await startGateway(config);

  const tierName = config.tiers.free ? 'free' : Object.keys(config.tiers)[0];
  const { key } = await gateway.store.create({ name: 'demo', tier: tierName });
  const granted = effectiveScopes(undefined, config.tiers[tierName].scopes);
  const route = config.routes.find((r) => granted.includes('*') || r.scopes.every((s) => granted.includes(s))) ?? config.routes[0];
  const host = reachable(config.listen.host);
  const admin = `http://${reachable(config.admin.host)}:${gateway.adminPort}`;
  // A token the user chose is theirs to keep out of terminals and logs: the shell expands it.
  const adminLines = !config.admin.token
    ? ['  (no admin.token in this config: the key API under /v1/keys is disabled)']
    : [
        generatedToken ? `  admin token (generated for this run; set SLUICE_ADMIN_TOKEN to choose one): ${generatedToken}` : '  admin token: $SLUICE_ADMIN_TOKEN',
        '',
        '  the admin API (README, "Admin API"):',
        ...(generatedToken ? [`    export SLUICE_ADMIN_TOKEN=${generatedToken}`] : []),
        `    export ADMIN="${admin}" AUTH="Authorization: Bearer $SLUICE_ADMIN_TOKEN"`,
        `    curl -s "$ADMIN/v1/keys" -H "$AUTH"`,
        `    curl -s -X POST "$ADMIN/v1/keys" -H "$AUTH" -H 'content-type: application/json' -d '{"name":"Acme","tier":"${tierName}"}'`,
      ];

  console.log(`
  sluice is running on http://${host}:${gateway.port} (admin: ${admin}/healthz)
  demo API key (tier ${tierName}, shown once): ${key}

  try it:
    curl -i -H 'x-api-key: ${key}' http://${host}:${gateway.port}${route.match.path_prefix}

${adminLines.join('\n')}

  Ctrl-C stops it.
`);

  const stop = () =>
    void gateway.shutdown().then(async () => {
      await Promise.all(upstreams.map((server) => new Promise((resolve) => server.close(resolve))));
      process.exit(0);
    });
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(`sluice demo: ${(err as Error).message}`);
  process.exit(1);
});
