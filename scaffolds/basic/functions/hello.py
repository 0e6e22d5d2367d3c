"""POST /api/functions/hello {"input": {"name": "Ada"}} -> {"message": "Hello, Ada!"}"""

from alyx_functions import define_function


async def handler(input, ctx):
    name = input.get("name") or "world"
    ctx.log.info(f"greeting {name}")
    return {"message": f"Hello, {name}!"}


hello = define_function(
    input={"name": {"type": "string", "nullable": True, "maxLength": 100}},
    output={"message": {"type": "string"}},
    handler=handler,
)
