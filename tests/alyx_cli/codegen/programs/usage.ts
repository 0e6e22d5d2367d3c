// Compile-time checks of the generated TypeScript types (tsc --strict --noEmit only).
import { createClient } from "./index.js";
import type { PostCreate } from "./index.js";

export async function usage(): Promise<void> {
  const alyx = createClient({ url: "http://127.0.0.1:8090" });
  const q = alyx.posts.query().filter("published", "eq", true).sort("-created_at", "title").limit(5).expand("author_id");
  const page = await alyx.posts.list(q);
  const title: string = page.docs[0].title;
  const author: string | undefined = page.docs[0].expand?.author_id?.email;
  void title;
  void author;
  // @ts-expect-error: not a field of posts
  alyx.posts.query().filter("nope", "eq", 1);
  // @ts-expect-error: published is a boolean
  alyx.posts.query().filter("published", "eq", "yes");
  // @ts-expect-error: title is required on create
  const missing: PostCreate = { slug: "s", author_id: "u" };
  void missing;
  // @ts-expect-error: only reference fields expand
  alyx.posts.query().expand("title");
  const out = await alyx.functions.publish({ post_id: "x" });
  const published: boolean = out.published;
  void published;
}
