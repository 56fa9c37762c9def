-- wrk script: etcd v3 JSON gateway point reads (POST /v3/kv/range) of keys that exist,
-- bench/00000 .. bench/<WRK_KEYS - 1> (benchmarks/peers_etcd.py writes them first).
--
-- Reads are linearizable: that is etcd's default, and "serializable" is deliberately not
-- set, so each read is confirmed with the quorum (ReadIndex) like raftsql's linearizable
-- reads. Environment: WRK_KEYS (default 10000), WRK_PERCENTILES (comma-separated, 0-100).
-- The helpers repeat put.lua's on purpose: wrk gives a script no way to locate a shared file.

local KEYS = tonumber(os.getenv("WRK_KEYS") or "10000")
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Standard base64 (with padding), by arithmetic so it needs no bit library.
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for k = 1, 4 do
      local sextet = math.floor(n / 64 ^ (4 - k)) % 64
      chars[k] = B64:sub(sextet + 1, sextet + 1)
    end
    if not b then chars[3] = "=" end
    if not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  non200, bad = 0, 0
  bodies = {}
  for i = 0, KEYS - 1 do
    bodies[i] = '{"key":"' .. base64(string.format("bench/%05d", i)) .. '"}'
  end
  counter = math.floor((thread_index or 0) * KEYS / 2)
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/v3/kv/range", headers, bodies[counter % KEYS])
end

function response(status, hdrs, body)
  if status ~= 200 then
    non200 = non200 + 1
  elseif not body:find('"kvs"', 1, true) then
    -- Every key read was written beforehand, so an answer without kvs is wrong.
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total_non200, total_bad = 0, 0
  for _, t in ipairs(threads) do
    total_non200 = total_non200 + (t:get("non200") or 0)
    total_bad = total_bad + (t:get("bad") or 0)
  end
  local e = summary.errors
  io.write(string.format("wrk.requests %d\n", summary.requests))
  io.write(string.format("wrk.duration_us %d\n", summary.duration))
  io.write(string.format("wrk.errors %d %d %d %d %d\n",
    e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("wrk.non200 %d\n", total_non200))
  io.write(string.format("wrk.bad_body %d\n", total_bad))
  local list = os.getenv("WRK_PERCENTILES") or "50,90,99"
  for p in list:gmatch("[^,]+") do
    io.write(string.format("wrk.latency_us %s %d\n", p, latency:percentile(tonumber(p))))
  end
end
