-- wrk script for pointd: every request is a new earn with a unique receipt
-- and a unique Idempotency-Key (so none is a replay or a duplicate receipt).
--
-- Environment (pointd-load --setup-only prints all of it):
--   POINTD_KEY      a POS (or admin) API key
--   POINTD_STORE    the store the earns happen at
--   POINTD_MEMBERS  member ids, comma separated; requests rotate over them
--   POINTD_RUN      optional: a tag that keeps receipts of separate runs apart
--   POINTD_PING     optional: set to 1 to POST /v1/ping instead (the ceiling);
--                   point wrk at http://HOST:PORT/v1/ping then
--
--   eval "$(go run ./cmd/pointd-load --target http://127.0.0.1:7070 --admin-key "$KEY" --setup-only)"
--   wrk -t2 -c64 -d15s --latency -s bench/earn.lua http://127.0.0.1:7070/v1/earns

local key = os.getenv("POINTD_KEY") or error("POINTD_KEY is not set")
local ping = os.getenv("POINTD_PING") == "1"
local store = os.getenv("POINTD_STORE")
local members = {}
if not ping then
  if not store then error("POINTD_STORE is not set") end
  for id in string.gmatch(os.getenv("POINTD_MEMBERS") or "", "[^,]+") do
    members[#members + 1] = id
  end
  if #members == 0 then error("POINTD_MEMBERS is not set") end
end

-- setup runs in the main Lua state, once per thread: number the threads so
-- that each one's receipts are its own.
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

local prefix
local counter = 0
-- Members' body heads are built once; a request only appends its receipt.
local heads = {}

function init(args)
  local run = os.getenv("POINTD_RUN") or tostring(os.time())
  prefix = "W" .. run .. "-" .. tostring(tid) .. "-"
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "application/json"
  for i, m in ipairs(members) do
    heads[i] = '{"member_id":"' .. m .. '","store_id":"' .. store .. '","receipt":"'
  end
end

function request()
  counter = counter + 1
  local r = prefix .. counter
  wrk.headers["Idempotency-Key"] = r
  if ping then
    return wrk.format(nil, nil, nil, '{"message":"wrk"}')
  end
  local body = heads[(counter % #heads) + 1] .. r .. '","purchase_amount":' .. (100 + counter % 9900) .. '}'
  return wrk.format(nil, nil, nil, body)
end
