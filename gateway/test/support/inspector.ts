import WebSocket from 'ws';
import type { TestGateway } from './gateway';

// The leak checks ask the V8 inspector of a gateway started with INSPECT_OPTIONS how much heap is
// still in use after a full GC: RSS and a plain heap reading follow V8's heuristics, which let old
// space grow to several times what is live before collecting, so they cannot tell garbage from a leak.

/** NODE_OPTIONS that open the gateway's inspector on a free loopback port (it prints the URL on stderr). */
export const INSPECT_OPTIONS = '--inspect=127.0.0.1:0';

/**
 * The gateway's V8 heap in use right after a full GC, in MB. Each call opens a connection of its
 * own and closes it, so an fd count taken between calls does not include it.
 */
export async function heapAfterGcMb(gateway: TestGateway): Promise<number> {
  const url = gateway.output.map((line) => /Debugger listening on (ws:\/\/\S+)/.exec(line)?.[1]).find(Boolean);
  if (!url) throw new Error(`the gateway was not started with ${INSPECT_OPTIONS}`);
  const inspector = new WebSocket(url);
  await new Promise((resolve, reject) => inspector.once('open', resolve).once('error', reject));
  let lastId = 0;
  const call = (method: string) =>
    new Promise<any>((resolve, reject) => {
      const id = ++lastId;
      const onMessage = (data: WebSocket.RawData) => {
        const message = JSON.parse(String(data));
        if (message.id !== id) return;
        inspector.off('message', onMessage);
        if (message.error) reject(new Error(`${method}: ${message.error.message}`));
        else resolve(message.result);
      };
      inspector.on('message', onMessage);
      inspector.send(JSON.stringify({ id, method }));
    });
  try {
    await call('HeapProfiler.collectGarbage');
    const { usedSize } = await call('Runtime.getHeapUsage');
    return Math.round(usedSize / 104857.6) / 10;
  } finally {
    inspector.terminate();
  }
}
