// The live round trip of the generated TypeScript client (run by test_live_typescript.py).
// Prints one JSON line of what it observed.
// The WebSocket implementation is passed in (the `ws` package of tests/codegen_env), as on
// Node 20, which has no global one.
import { createRequire } from "node:module";
import { createClient, ForbiddenError } from "./index.js";
import type { Post, Tokens, WebSocketConstructor } from "./index.js";

const url = process.argv[2];
const tag = process.argv[3];
const WS = createRequire(process.argv[4])("ws") as WebSocketConstructor;
const PASSWORD = "correct horse 1";

function waitFor(events: string[][], want: string[], check: () => void = () => undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = (): void => {
      if (events.some((e) => e.join() === want.join())) {
        check();
        resolve();
      } else if (Date.now() - started > 10_000) reject(new Error(`never saw ${want.join()}: ${JSON.stringify(events)}`));
      else setTimeout(tick, 20);
    };
    tick();
  });
}

async function main(): Promise<void> {
  const saved: (Tokens | null)[] = [];
  const a = createClient({ url, WebSocket: WS, onTokens: (t) => { saved.push(t); } });
  const b = createClient({ url, WebSocket: WS });
  const result: Record<string, unknown> = {};
  try {
    const session = await a.auth.register(`ts-a-${tag}@example.com`, PASSWORD);
    await b.auth.register(`ts-b-${tag}@example.com`, PASSWORD);
    const me = await a.auth.me();
    result.registered = saved.at(-1)?.access_token === a.auth.tokens?.access_token && me.id === session.user.id;
    const uid = session.user.id;
    const ids: Record<string, string> = {};
    for (const t of ["p-a", "p-b", "p-c"]) {
      ids[t] = (await a.posts.create({ title: t, slug: `ts-${tag}-${t}`, author_id: uid, published: true })).id;
    }
    const listed = await a.posts.list(a.posts.query().filter("author_id", "eq", uid).filter("title", "eq", "p-b"));
    result.listed = listed.docs.map((d: Post) => d.title);
    result.updated_body = (await a.posts.update(ids["p-b"], { body: "edited" })).body;

    const events: string[][] = [];
    const inserted: string[] = [];
    const deleted: unknown[] = [];
    const window = a.posts.query().filter("author_id", "eq", uid).sort("title").limit(2);
    const sub = a.posts.subscribe(window, (docs, change) => {
      events.push(docs.map((d) => d.title));
      inserted.push(...change.inserts.map((d) => d.title));
      deleted.push(...change.deletes);
    });
    await waitFor(events, ["p-a", "p-b"]);
    result.snapshot = sub.docs.map((d) => d.title);
    inserted.length = 0;
    const p0 = await a.posts.create({ title: "p-0", slug: `ts-${tag}-p-0`, author_id: uid, published: true });
    await waitFor(events, ["p-0", "p-a"]);
    result.after_insert = sub.docs.map((d) => d.title);
    result.inserted = [...inserted];
    await a.posts.delete(p0.id);
    const settle = Date.now();
    while (!deleted.includes(p0.id) && Date.now() - settle < 10_000) await new Promise((r) => setTimeout(r, 20));
    result.after_delete = sub.docs.map((d) => d.title);
    result.deleted = deleted.includes(p0.id);
    sub.unsubscribe();

    result.function = (await a.functions.hello({ name: "Ada" })).message;
    try {
      await b.posts.delete(ids["p-a"]);
      result.forbidden_code = "none";
    } catch (e) {
      if (!(e instanceof ForbiddenError)) throw e;
      result.forbidden_code = e.code;
      result.forbidden_status = e.status;
      result.forbidden_message = e.message;
    }
    const batch = await a.batch([a.posts.op.update(ids["p-c"], { body: "batched" }), a.posts.op.get(ids["p-a"])] as const);
    result.batch = [batch[0].body.body, batch[1].body.title];
  } finally {
    a.close();
    b.close();
  }
  console.log(JSON.stringify(result));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
