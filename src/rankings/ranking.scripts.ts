/**
 * Lua run atomically in Redis (EVAL) so that the repair and a late increment can
 * never both count one sale. Per business day:
 * - `ranking:daily:{date}`         the ZSET readers use;
 * - `ranking:daily:{date}:asof`    the repair's watermark W: the ZSET holds every sale paid at or before W, from D1;
 * - `ranking:daily:{date}:recent`  orderId -> "paidAt|[[productId,qty],...]" for increments paid after W.
 * An increment paid at or before W is already in the ZSET and is dropped; one paid after W
 * is applied once per order (HSETNX) and remembered, so the next repair re-adds it on top of
 * D1's base and forgets it once its own watermark passes it.
 */

/** KEYS: zset, asof, recent. ARGV: paidAt, orderId, itemsJson, ttlSeconds. */
export const INCREMENT_ONCE = `
local paidAt = tonumber(ARGV[1])
if paidAt <= tonumber(redis.call('GET', KEYS[2]) or '-1') then return 0 end
if redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[1] .. '|' .. ARGV[3]) == 0 then return 0 end
for _, it in ipairs(cjson.decode(ARGV[3])) do redis.call('ZINCRBY', KEYS[1], it[2], tostring(it[1])) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return 1`;

/**
 * KEYS: zset, asof, recent. ARGV: watermark, ttlSeconds, then score/member pairs (D1's sales paid at or before the watermark).
 * A repair older than the stored watermark changes nothing (an overlapping, newer repair won).
 */
export const REPLACE_DAY = `
local w = tonumber(ARGV[1])
if w < tonumber(redis.call('GET', KEYS[2]) or '-1') then return 0 end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
local recent = redis.call('HGETALL', KEYS[3])
for j = 1, #recent, 2 do
  local v = recent[j + 1]
  local sep = string.find(v, '|', 1, true)
  if tonumber(string.sub(v, 1, sep - 1)) <= w then
    redis.call('HDEL', KEYS[3], recent[j])
  else
    for _, it in ipairs(cjson.decode(string.sub(v, sep + 1))) do redis.call('ZINCRBY', KEYS[1], it[2], tostring(it[1])) end
  end
end
redis.call('SET', KEYS[2], ARGV[1])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return 1`;
