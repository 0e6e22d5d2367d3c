from alyx_functions import define_function


async def handler(input, ctx):
    return {"summary": "", "tokens": None}


summarize = define_function(input={}, output={}, handler=handler)
