/**
 * Embedding: an app that calls `startAgent()` itself (no preload) gets an engine installed with a
 * warning, a working agent, a `close()` that tells clients the agent is stopping (4006), and a process
 * that still exits on its own. Also the option rules that need no process: loopback detection, TLS
 * pairing, required tokens.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { AgentClient } from '../client/connection';
import { CLOSE } from '../shared';
import { startAgent } from '../server/agent';
import { resolveOptions } from '../server/agent/options';
import { createProject, createTokens, type Project, type Tokens } from './helpers/project';

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
  let child: ChildProcess;
  let out = '';
  let err = '';
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
    child = spawn(process.execPath, [join(project.root, 'embed.js')], { cwd: project.root, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    for (let i = 0; i < 300 && !/ADDR (\S+)/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
  });
  after(() => {
    child?.kill('SIGKILL');
    project?.cleanup();
  });

  it('installs an engine with a warning and serves', async () => {
    const address = /ADDR (\S+)/.exec(out)?.[1];
    assert.ok(address, `stdout: ${out}\nstderr: ${err}`);
    assert.match(err, /livepatch: warning: the engine was installed by startAgent/);
    assert.match(err, new RegExp(`livepatch: agent listening on ${address.replace(/\./g, '\\.')}`));
    const c = await AgentClient.connect(address, { token: tokens.read });
    assert.equal((await c.request('status', {})).pid, child.pid);
    // Using the REPL starts its worker; close() must stop it too, or the process would not exit.
    assert.equal((await c.request('eval', { code: '1 + 1' })).output, '2');
    const closed = new Promise<{ code: number }>((r) => c.once('close', r));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.stdin!.end('close\n');
    assert.equal((await closed).code, CLOSE.AGENT_STOPPING);
    // Nothing else keeps the process alive: it exits by itself once the agent is closed.
    assert.equal(await exited, 0);
    assert.match(out, /CLOSED/);
  });
});
