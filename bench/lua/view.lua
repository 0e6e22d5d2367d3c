-- GET one record by id, a different random id from a file on each request, so that the
-- reads spread over the whole table instead of hitting one cached row.
--
--   wrk ... -s view.lua http://127.0.0.1:PORT -- PATH_PREFIX IDS_FILE
--
-- PATH_PREFIX is the route up to the id ("/api/collections/posts/"); IDS_FILE holds one
-- id per line.

local threads_started = 0

function setup(thread)
  threads_started = threads_started + 1
  thread:set("thread_number", threads_started)
end

local prefix = nil
local ids = {}

function init(args)
  prefix = args[1]
  for line in io.lines(args[2]) do
    if #line > 0 then
      ids[#ids + 1] = line
    end
  end
  if prefix == nil or #ids == 0 then
    error("usage: -- PATH_PREFIX IDS_FILE (with at least one id)")
  end
  -- Each thread has its own Lua state: without a distinct seed they would all draw the
  -- same sequence of ids.
  math.randomseed(os.time() + 7919 * (thread_number or 0))
end

function request()
  return wrk.format("GET", prefix .. ids[math.random(#ids)])
end
