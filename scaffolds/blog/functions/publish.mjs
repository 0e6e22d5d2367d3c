// POST /api/functions/publish {"input": {"post_id": "..."}} publishes one of your posts.
// The update runs as the caller, so the posts update rule decides who may publish.
import { defineFunction } from "@alyx/functions";

export default defineFunction({
  input: { post_id: { type: "uuid" } },
  output: { id: { type: "uuid" }, published: { type: "bool" } },
  async handler(input, ctx) {
    const post = await ctx.db.posts.update(input.post_id, { published: true });
    ctx.log.info(`published ${post.id}`);
    return { id: post.id, published: post.published };
  },
});
