/**
 * Cluster mode with a journal: the primary journals each committed patch; when the whole app is
 * restarted, the primary replays the journal into its model before any worker exists, and the new
 * workers are synced to the replayed generation before their first request.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { createProject, createTokens, startApp, type AppProcess } from './helpers/project';
import { get, pairPatch } from './cluster-fixture';

const project = createProject('cluster');
const tokens = createTokens(project.root);
const env = {
  LIVEPATCH_TOKENS: tokens.file,
  LIVEPATCH_JOURNAL: join(project.root, 'journal'),
  LIVEPATCH_AUDIT: join(project.root, 'audit.jsonl'),
  WORKERS: '2',
};
let app: AppProcess | undefined;

after(async () => {
  await app?.stop();
  project.cleanup();
});

test('a committed patch survives a restart of the whole cluster', async () => {
  app = await startApp(project.root, { env });
  let client = await AgentClient.connect(app.agent!, { token: tokens.patch });
  await client.request('apply', { patch: pairPatch('A7', 'B7', 'journaled') });
  client.close();
  await app.stop();

  app = await startApp(project.root, { env });
  // The very first requests already see the replayed patch, from both workers.
  const first = await Promise.all(Array.from({ length: 12 }, () => get(new http.Agent(), app!.httpPort, '/mix')));
  assert.deepEqual([...new Set(first.map((x) => `${x.a}/${x.b}`))], ['A7/B7'], JSON.stringify(first));
  client = await AgentClient.connect(app.agent!, { token: tokens.patch });
  const s = await client.request('status', {});
  assert.equal(s.currentGeneration, 2);
  assert.deepEqual(
    s.workers?.map((w) => w.generation),
    [2, 2],
  );
  assert.deepEqual(s.drift, []);
  const h = await client.request('history', {});
  assert.deepEqual(
    h.generations.map((g) => [g.generation, g.kind, g.patchId ?? '']),
    [
      [1, 'deploy', ''],
      [2, 'patch', 'journaled'],
    ],
  );
  // The replayed patch id counts as applied.
  const dup = await client.request('apply', { patch: pairPatch('A7', 'B7', 'journaled') }).catch((e: { code: string }) => e.code);
  assert.equal(dup, 'LP_ERR_PATCH_DUPLICATE');
  client.close();
});
