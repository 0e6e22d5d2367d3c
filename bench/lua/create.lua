-- POST one new record per request: the same small JSON body every time, so that the
-- load generator spends as little of the shared CPU as possible.
--
--   wrk ... -s create.lua http://127.0.0.1:PORT/api/collections/posts

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"title":"bench post","author":"bench","n":1,"published":true}'
