/**
 * Embedding: an app that calls `startAgent()` itself (no preload) gets an engine installed with a
 * warning, a working agent, a `close()` that tells clients the agent is stopping (4006), and a process
 * that still exits on its own. Also the option rules that need no process: loopback detection, TLS
 * pairing, required tokens.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { CLOSE } from '../shared';
import { startAgent } from '../server/agent';
import { resolveOptions } from '../server/agent/options';
import { createProject, createTokens, type Project, type Tokens } from './helpers/project';
import { launch, type Launched } from '../testkit/launch';

describe('agent options', () => {
  it('accepts loopback addresses and Unix sockets without TLS', () => {
    for (const listen of ['127.0.0.1:0', '[::1]:0', 'localhost:0', 'unix:/tmp/x.sock'])
      assert.doesNotThrow(() => resolveOptions({ listen, tokensFile: 't.json' }), listen);
  });
  it('refuses other addresses without TLS unless insecure, and half a TLS pair', () => {
    assert.throws(() => resolveOptions({ listen: '10.1.2.3:9', tokensFile: 't.json' }), /refusing to listen on 10\.1\.2\.3:9 without TLS/);
    assert.doesNotThrow(() => resolveOptions({ listen: '10.1.2.3:9', tokensFile: 't.json', insecure: true }));
    assert.throws(() => resolveOptions({ tokensFile: 't.json', tlsCertFile: 'c.pem' }), /both a certificate and a key/);
    assert.throws(() => resolveOptions({}), /no unauthenticated mode/);
    assert.throws(() => resolveOptions({ tokensFile: 't.json', maxInflight: 0 }), /maxInflight/);
  });
  it('startAgent rejects (never throws) on bad options', async () => {
    await assert.rejects(startAgent({ listen: 'nonsense', tokensFile: 't.json' }), /invalid listen address/);
  });
});

describe('agent embedded with startAgent()', () => {
  let project: Project;
  let tokens: Tokens;
  let embed: Launched | undefined;
  before(async () => {
    project = createProject();
    tokens = createTokens(project.root);
    project.write(
      'embed.js',
      `const { startAgent } = require('livepatch');
startAgent({ tokensFile: ${JSON.stringify(tokens.file)}, listen: '127.0.0.1:0', root: ${JSON.stringify(project.root)} }).then((agent) => {
  console.log('ADDR ' + agent.address);
  process.stdin.once('data', async () => {
    process.stdin.pause();
    await agent.close();
    console.log('CLOSED');
  });
});
`,
    );
    embed = await launch({
      args: [join(project.root, 'embed.js')],
      cwd: project.root,
      stdin: true,
      name: 'embedding app',
      ready: [
        { stream: 'stdout', pattern: /ADDR (\S+)/ },
        { stream: 'stderr', pattern: /livepatch: agent listening on / },
      ],
    });
  });
  after(async () => {
    await embed?.stop();
    project?.cleanup();
  });

  it('installs an engine with a warning and serves', async () => {
    const { child } = embed!;
    const address = embed!.ready[0]![1]!;
    const err = embed!.stderr();
    assert.match(err, /livepatch: warning: the engine was installed by startAgent/);
    assert.match(err, new RegExp(`livepatch: agent listening on ${address.replace(/\./g, '\\.')}`));
    const c = await AgentClient.connect(address, { token: tokens.read });
    assert.equal((await c.request('status', {})).pid, child.pid);
    // Using the REPL starts its worker; close() must stop it too, or the process would not exit.
    assert.equal((await c.request('eval', { code: '1 + 1' })).output, '2');
    const closed = new Promise<{ code: number }>((r) => c.once('close', r));
    child.stdin!.end('close\n');
    assert.equal((await closed).code, CLOSE.AGENT_STOPPING);
    // Nothing else keeps the process alive: it exits by itself once the agent is closed.
    assert.equal((await embed!.exited).code, 0);
    assert.match(embed!.stdout(), /CLOSED/);
  });
});
