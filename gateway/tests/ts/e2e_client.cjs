// End-to-end scenario with the TypeScript MCP SDK (@modelcontextprotocol/sdk,
// pinned by gateway/tests/e2e-ts.sh) against two gateway nodes over one store:
//
//   node e2e_client.cjs NODE_A_URL NODE_B_URL MATH_BACKEND_BASE OWNER_TOKEN OTHER_TOKEN
//
// SDK directory: TS_MCP (default target/ts-mcp). Initialize on A, list and
// call through A, resume the session on B (the SDK skips initialize when
// given a session id) where the counter continues on the same backend
// session, a second identity is refused on B, DELETE through B, then A
// refuses the session and the math backend has no session left open.
'use strict';
const path = require('node:path');
const { createRequire } = require('node:module');

const sdkRoot = path.resolve(process.env.TS_MCP || 'target/ts-mcp');
const req = createRequire(path.join(sdkRoot, 'package.json'));
const { Client } = req('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = req('@modelcontextprotocol/sdk/client/streamableHttp.js');

const [A, B, MATH, OWNER, OTHER] = process.argv.slice(2);
if (!OTHER) {
  console.error('usage: node e2e_client.cjs A B MATH OWNER_TOKEN OTHER_TOKEN');
  process.exit(2);
}
const auth = (token) => ({ requestInit: { headers: { Authorization: `Bearer ${token}` } } });

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const text = (r) => (r.content || []).filter((c) => c.type === 'text').map((c) => c.text).join('');

async function openMath() {
  const res = await fetch(`${MATH}/admin/sessions`);
  return (await res.text()).split('\n').filter((l) => l.length > 0);
}

async function main() {
  const onA = new Client({ name: 'ts-e2e', version: '1.0.0' });
  const tA = new StreamableHTTPClientTransport(new URL(A), auth(OWNER));
  await onA.connect(tA);
  const sid = tA.sessionId;
  check(typeof sid === 'string' && sid.length > 0, `initialize on A gives an Mcp-Session-Id (${sid})`);

  const names = (await onA.listTools()).tools.map((t) => t.name);
  check(names.includes('math__add') && names.includes('text__echo'), 'tools of both backends listed as BACKEND__TOOL');
  check(text(await onA.callTool({ name: 'math__counter', arguments: {} })) === '1', 'counter on A is 1');

  const onB = new Client({ name: 'ts-e2e', version: '1.0.0' });
  const tB = new StreamableHTTPClientTransport(new URL(B), { sessionId: sid, ...auth(OWNER) });
  await onB.connect(tB);
  check(text(await onB.callTool({ name: 'math__add', arguments: { a: 2, b: 40 } })) === '42', 'math__add through B with the same session id');
  check(text(await onB.callTool({ name: 'math__counter', arguments: {} })) === '2', 'counter continues on B (same backend session)');
  check((await openMath()).length === 1, 'one math backend session open');

  const foreign = await fetch(B, {
    method: 'POST',
    headers: {
      Authorization: `Bearer ${OTHER}`,
      'Mcp-Session-Id': sid,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      'Mcp-Protocol-Version': '2025-11-25',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list' }),
  });
  check(foreign.status === 403, `another identity presenting the session id gets ${foreign.status}`);
  check(text(await onA.callTool({ name: 'math__counter', arguments: {} })) === '3', 'the owner continues on A');

  await tB.terminateSession();
  check(tB.sessionId === undefined, 'DELETE through B accepted');
  let refused = false;
  try {
    await onA.callTool({ name: 'math__counter', arguments: {} });
  } catch (e) {
    refused = true;
    console.log(`   (A: ${String(e.message || e).split('\n')[0]})`);
  }
  check(refused, 'A refuses the session after DELETE on B');
  check((await openMath()).length === 0, 'no math backend session left open');
  await onA.close().catch(() => {});
  await onB.close().catch(() => {});
  console.log('typescript e2e: all checks held');
}

main().catch((e) => {
  console.error('FAILED:', e);
  process.exit(1);
});
