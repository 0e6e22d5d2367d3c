"""POST /api/functions/clear_completed {"input": {"list_id": "..."}} deletes a list's done todos.

The function runs as the caller, so the todos rules still decide what it may see and delete.
"""

from alyx_functions import define_function


async def handler(input, ctx):
    done = await ctx.db.todos.find(filter={"list_id": input["list_id"], "done": True})
    await ctx.db.transaction(
        [{"method": "DELETE", "collection": "todos", "id": todo["id"]} for todo in done]
    )
    ctx.log.info(f"cleared {len(done)} todos from list {input['list_id']}")
    return {"deleted": len(done)}


clear_completed = define_function(
    input={"list_id": {"type": "uuid"}},
    output={"deleted": {"type": "int"}},
    handler=handler,
)
