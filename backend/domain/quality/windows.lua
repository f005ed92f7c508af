-- The quality script (backend/domain/quality/windows.py loads it at start): one call judges a
-- batch of events against the windows kept in Redis and answers a few bits per event.
-- $$name placeholders are the module's constants, filled in once when it is loaded (Template).
--
-- Argument: ARGV[1], one msgpack array of $stride values per event, flat:
--   kind (1 click, 2 impression, 3 conversion), id, time in ms, then
--   click:      link, partner, visitor hash, network prefix or ""
--   impression: link, 0, visitor hash, ""
--   conversion: merchant, 0, "", network prefix or "" (a postback)
-- Answer: one integer of bits per event, in the order asked (windows.py names the bits).
--
-- Keys it builds (one Redis server, not a cluster):
--   ct:v:<partner>:<day>     hash visitor hash -> visit (below); expires $unique_ttl_s s after a write
--   ct:n:<partner>:<day>     hash network prefix -> prefix window (below); in memory only (never
--                            in the AOF nor on replicas), expires the grace after its day;
--                            field "" holds a 1 KiB marker that keeps it a hash table
--   ct:u:i:<day>:<link>      hash visitor hash -> first impression id
--   ct:u:c:<day>:<link>      hash visitor hash -> first click id, for links past $first_links in a visit
--   ct:w:x:<merchant>:<prefix>  sorted set of conversion ids scored by time
--
-- Packed values (struct formats, big-endian; 'd' a double, 'H' an unsigned 16-bit length):
--   visit  = '>H' size of firsts, firsts, window
--     firsts: up to $first_links entries '>dH' (link, id length) then the id: each link's first
--             click id that day
--     window: entries, the id then '>ddH' (time, link, id length), in (time, 'link:id') order;
--             read from the end (an entry's fixed part follows its id), never decoded whole
--   prefix window = entries '>dd' (key, link) in (key, link) order, where key is the click's time
--             in its UTC day times 2^24 plus the visitor hash's last three bytes

redis.replicate_commands()  -- effects, not the script, go to the AOF: some may be left out
local events = cmsgpack.unpack(ARGV[1])

-- The hashes the batch reads, each with one HMGET rather than a call per event: its name, the
-- fields asked and their values, the fields to write back and, for a visit hash, the clicks
-- placed per visitor since its value was last trimmed (0: a new value of one click).
local hashes = {}
local named = {}  -- prefix -> number -> number -> hash, so names are not built per event
local function hash_of(prefix, a, b, placing)
  local by_a = named[prefix]
  if by_a == nil then
    by_a = {}
    named[prefix] = by_a
  end
  local by_b = by_a[a]
  if by_b == nil then
    by_b = {}
    by_a[a] = by_b
  end
  local hash = by_b[b]
  if hash == nil then
    hash = {name = prefix .. a .. ':' .. b, fields = {}, values = {}, writes = {}}
    if placing then
      hash.placed = {}
    end
    by_b[b] = hash
    hashes[#hashes + 1] = hash
  end
  return hash
end

-- The prefixes' windows on a partner's links in a UTC day, beside its visits: a hash that
-- expires the grace after its day (counted from an event's time).
local function prefixes_beside(visits, partner, day, at)
  local hash = visits.prefixes
  if hash == nil then
    hash = hash_of('ct:n:', partner, day, false)
    hash.added = {}  -- prefix -> the batch's entries so far (after the stored ones)
    hash.ttl_s = math.ceil(((day + 1) * $day_ms + $grace_ms - at) / 1000)
    visits.prefixes = hash
  end
  return hash
end

local function ask(hash, field)
  local values = hash.values
  if values[field] == nil then
    values[field] = false
    local fields = hash.fields
    fields[#fields + 1] = field
  end
end

local hash_of_event, prefixes_of_event = {}, {}
for i = 1, #events, $stride do
  local kind, _, at, of, partner, visitor, network = unpack(events, i, i + $stride - 1)
  if kind ~= $conversion then
    local day = math.floor(at / $day_ms)
    local hash
    if kind == $click then
      hash = hash_of('ct:v:', partner, day, true)
      if network ~= '' then
        local prefixes = hash.prefixes or prefixes_beside(hash, partner, day, at)
        local values = prefixes.values
        if values[network] == nil then
          values[network] = false
          local fields = prefixes.fields
          fields[#fields + 1] = network
        end
        prefixes_of_event[i] = prefixes
      end
    else
      hash = hash_of('ct:u:i:', day, of, false)
    end
    ask(hash, visitor)
    hash_of_event[i] = hash
  end
end
for _, hash in ipairs(hashes) do
  local fields, values = hash.fields, hash.values
  for from = 1, #fields, $per_call do
    local upto = math.min(from + $per_call - 1, #fields)
    local got = redis.call('HMGET', hash.name, unpack(fields, from, upto))
    for j = from, upto do
      values[fields[j]] = got[j - from + 1]
    end
  end
end

-- An impression's uniqueness: its visitor's first impression id on the link that day.
local function first_seen(hash, visitor, id)
  local values = hash.values
  local first = values[visitor]
  if not first then
    values[visitor] = id
    local writes = hash.writes
    writes[#writes + 1] = visitor
    writes[#writes + 1] = id
    return $unique
  end
  if first == id then
    return $unique
  end
  return 0
end

-- A visit: one visitor's clicks on one partner's links in one UTC day, a value of three parts:
-- the size of ``firsts`` ('>H'), ``firsts``, ``window``.
-- ``firsts``: the first click id on each link, entries (link, id length) ('>dH') then the id,
-- for up to $first_links links; further links keep theirs in a hash per (day, link).
-- ``window``: the latest clicks, entries id then (time, link, id length) ('>ddH') in (time,
-- 'link:id') order, read from the end: a click mostly goes last and is judged by the entries
-- just before it, so a value is never decoded whole.

-- Whether ``value`` holds ``id`` at ``at``, compared in place (no string is made).
local function holds(value, at, id)
  return string.find(value, id, at, true) == at
end

local overflows = {}  -- the (day, link) hashes this call wrote to
local function first_click(value, visitor, day, link, id)
  local base = struct.unpack('>H', value, 1) + 2
  local pos, count = 3, 0
  while pos < base do
    local other, length = struct.unpack('>dH', value, pos)
    if other == link then
      if length == #id and holds(value, pos + 10, id) then
        return $unique, value
      end
      return 0, value
    end
    pos = pos + 10 + length
    count = count + 1
  end
  if count < $first_links then
    return $unique, struct.pack('>HdHc0', base + 8 + #id, link, #id, id) .. string.sub(value, 3)
  end
  local key = 'ct:u:c:' .. day .. ':' .. link
  overflows[key] = true
  if redis.call('HSETNX', key, visitor, id) == 1 or redis.call('HGET', key, visitor) == id then
    return $unique, value
  end
  return 0, value
end

-- Byte order, as a sorted set orders its members (Lua's < follows the server's locale).
local function bytes_before(a, b)
  for p = 1, math.min(#a, #b) do
    local x, y = string.byte(a, p), string.byte(b, p)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

local function entry_at(value, stop)  -- the time, link and id start of the entry ending at stop
  local at, link, length = struct.unpack('>ddH', value, stop - 17)
  return at, link, stop - 17 - length
end

-- Puts a click in the window (the value after ``base``) unless it is there already (a
-- replay); returns the value and where the entries before the click end.
local function place(value, base, at, link, id)
  local stop = #value
  while stop > base do
    local time, other_link, start = entry_at(value, stop)
    if time < at then
      break
    end
    if time == at then
      if other_link == link and stop - 17 - start == #id and holds(value, start, id) then
        return value, start - 1
      end
      local other = other_link .. ':' .. string.sub(value, start, stop - 18)
      if bytes_before(other, link .. ':' .. id) then
        break
      end
    end
    stop = start - 1
  end
  local entry = struct.pack('>c0ddH', id, at, link, #id)
  if stop == #value then
    return value .. entry, stop
  end
  return string.sub(value, 1, stop) .. entry .. string.sub(value, stop + 1), stop
end

-- A click's verdict from the up to $partner_limit entries just before it, the latest first.
local function judge_click(value, base, stop, link, at)
  local bits, on_partner, on_link = 0, 0, 0
  while stop > base and on_partner < $partner_limit do
    local time, other_link, start = entry_at(value, stop)
    local age = at - time
    if age >= $partner_window_ms then
      break
    end
    on_partner = on_partner + 1
    if age < $link_window_ms and other_link == link then
      if on_link == 0 and age < $duplicate_ms then
        bits = bits + $duplicate
      end
      on_link = on_link + 1
    end
    stop = start - 1
  end
  if on_link >= $link_limit then
    bits = bits + $rate_limited_link
  end
  if on_partner >= $partner_limit then
    bits = bits + $rate_limited_partner
  end
  return bits
end

-- The value with the window's newest $keep entries, none older than the grace before the
-- newest one's window.
local function trimmed(value)
  local base = struct.unpack('>H', value, 1) + 2
  local stop, kept = #value, 0
  local oldest = entry_at(value, stop) - $partner_window_ms - $grace_ms
  while stop > base and kept < $keep do
    local time, _, start = entry_at(value, stop)
    if time < oldest then
      break
    end
    kept = kept + 1
    stop = start - 1
  end
  if stop > base then
    return string.sub(value, 1, base) .. string.sub(value, stop + 1)
  end
  return value
end

local function click(hash, visitor, id, at, link)
  local values, placed = hash.values, hash.placed
  local value = values[visitor]
  local times = placed[visitor]
  if times == nil then
    local writes = hash.writes
    writes[#writes + 1] = visitor
    if not value then  -- the visitor's first click on the partner's links that day
      values[visitor] = struct.pack('>HdHc0c0ddH', 10 + #id, link, #id, id, id, at, link, #id)
      placed[visitor] = 0
      return $unique
    end
    times = 0
  elseif times == $keep then  -- many clicks of one visitor in a batch cost no more each
    value = trimmed(value)
    times = 0
  end
  placed[visitor] = times + 1
  local bits, before
  bits, value = first_click(value, visitor, math.floor(at / $day_ms), link, id)
  local base = struct.unpack('>H', value, 1) + 2
  value, before = place(value, base, at, link, id)
  values[visitor] = value
  if before > base then
    bits = bits + judge_click(value, base, before, link, at)
  end
  return bits
end

-- A prefix's window: its clicks on a partner's links that UTC day, entries of two doubles
-- ('>dd'): the click's key (its time in the day times 2^24 plus its visitor hash's last three
-- bytes, so one visitor's click on a link at one millisecond is one, replayed or not) and its
-- link, in that order. Its entries are the stored ones (``values``), then the batch's own
-- (``added``); an entry is read where it lies.
local function entry_of(stored, added, k)  -- the key and the link of the entry k (from 1)
  local count = #stored / 16
  if k > count then
    return struct.unpack('>dd', added, 16 * (k - count) - 15)
  end
  return struct.unpack('>dd', stored, 16 * k - 15)
end

-- Puts a click in a window unless it is there (a replay); returns how many entries precede it.
-- A click mostly goes after the last entry: ``prefix_click`` does that itself.
local function place_click(prefixes, network, key, link)
  local stored, added = prefixes.values[network] or '', prefixes.added[network]
  local count = #stored / 16
  local k, other, other_link = count + #added / 16, nil, nil
  while k > 0 do
    other, other_link = entry_of(stored, added, k)
    if other < key or (other == key and other_link <= link) then
      break
    end
    k = k - 1
  end
  if k > 0 and other == key and other_link == link then
    return k - 1
  end
  local entry = struct.pack('>dd', key, link)
  if k >= count then
    local cut = 16 * (k - count)
    added = string.sub(added, 1, cut) .. entry .. string.sub(added, cut + 1)
  else  -- among the stored ones (a late click): they become the batch's own
    added = string.sub(stored, 1, 16 * k) .. entry .. string.sub(stored, 16 * k + 1) .. added
    prefixes.values[network] = ''
  end
  prefixes.added[network] = added
  return k
end

-- Whether ``key`` is of a click less than ``window_ms`` before ``at`` (both in their day).
local function within(key, at, window_ms)
  return key >= (at - window_ms + 1) * 16777216
end

-- A click's verdict from the up to $prefix_partner_limit entries just before it (at least
-- $prefix_duplicate_limit). The partner's limit is read at its offset; the link's are looked
-- for among the latest entries only when enough of them are recent enough.
local function judge_prefix(stored, added, before, at, link)
  local bits, horizon = 0, 0
  if before >= $prefix_partner_limit then
    local key = entry_of(stored, added, before - $prefix_partner_limit + 1)
    if within(key, at, $partner_window_ms) then
      bits = $prefix_rate_limited_partner
    end
  end
  local fiftieth = before >= $prefix_link_limit
    and entry_of(stored, added, before - $prefix_link_limit + 1)
  local fifth = entry_of(stored, added, before - $prefix_duplicate_limit + 1)
  if fiftieth and within(fiftieth, at, $link_window_ms) then
    horizon = $link_window_ms
  elseif within(fifth, at, $duplicate_ms) then
    horizon = $duplicate_ms
  else
    return bits
  end
  local on_link = 0
  local oldest, recent = (at - horizon + 1) * 16777216, (at - $duplicate_ms + 1) * 16777216
  for k = before, math.max(1, before - $prefix_partner_limit + 1), -1 do
    local key, other_link = entry_of(stored, added, k)
    if key < oldest then
      break
    end
    if other_link == link then
      on_link = on_link + 1
      if on_link == $prefix_duplicate_limit and key >= recent then
        bits = bits + $prefix_duplicate
      end
      if on_link == $prefix_link_limit then
        return bits + $prefix_rate_limited_link
      end
    end
  end
  return bits
end

-- The entries a window keeps from the first one returned: of its newest $prefix_keep, none
-- older than the grace before the newest one's window.
local function first_kept(stored, added)
  local count = (#stored + #added) / 16
  local newest = math.floor(entry_of(stored, added, count) / 16777216)
  local oldest = (newest - $partner_window_ms - $grace_ms) * 16777216
  local first = math.max(1, count - $prefix_keep + 1)
  while entry_of(stored, added, first) < oldest do
    first = first + 1
  end
  return first
end

local function prefix_click(prefixes, network, visitor, at, link)
  at = at % $day_ms
  local a, b, c = string.byte(visitor, -3, -1)
  local key = at * 16777216 + ((a or 0) * 256 + (b or 0)) * 256 + (c or 0)
  local stored, added = prefixes.values[network] or '', prefixes.added[network]
  if added == nil then
    added = ''
    local writes = prefixes.writes
    writes[#writes + 1] = network
  end
  local before = (#stored + #added) / 16
  local last, last_link = 0, 0
  if #added > 0 then
    last, last_link = struct.unpack('>dd', added, #added - 15)
  elseif before > 0 then
    last, last_link = struct.unpack('>dd', stored, #stored - 15)
  end
  if last < key or (last == key and last_link < link) then  -- after the last entry: mostly
    added = added .. struct.pack('>dd', key, link)
    prefixes.added[network] = added
  else
    prefixes.added[network] = added
    before = place_click(prefixes, network, key, link)
    stored, added = prefixes.values[network] or '', prefixes.added[network]
  end
  local bits, fifth = 0, before >= $prefix_duplicate_limit
    and entry_of(stored, added, before - $prefix_duplicate_limit + 1)
  if before >= $prefix_link_limit or fifth and within(fifth, at, $duplicate_ms) then
    bits = judge_prefix(stored, added, before, at, link)
  end
  if #added > 32 * $prefix_keep then  -- a prefix's many clicks in one batch
    local all = stored .. added
    prefixes.values[network] = ''
    prefixes.added[network] = string.sub(all, 16 * first_kept('', all) - 15)
  end
  return bits
end

-- A window's value after the batch: the batch's entries appended, or the kept entries alone
-- when stale entries make a quarter of it (and at least 8).
local function stored_window(stored, added)
  if added == '' then
    return stored  -- replays only
  end
  local first = stored ~= '' and stored or added
  local newest = math.floor(struct.unpack('>d', added, #added - 15) / 16777216)
  local count = (#stored + #added) / 16
  if count <= $prefix_keep
      and struct.unpack('>d', first) >= (newest - $partner_window_ms - $grace_ms) * 16777216 then
    return stored .. added  -- nothing stale
  end
  local kept = first_kept(stored, added)
  if kept <= math.max(8, count / 4) then
    return stored .. added
  end
  return string.sub(stored .. added, 16 * kept - 15)
end

-- A value this long keeps a prefixes' hash a hash table: Redis keeps a hash of short values
-- as a list, searched field by field, until it has 512.
local hash_table_marker = string.rep('-', 1024)

-- A conversion's entry in the sorted set of its (merchant, prefix): how many precede it.
local function place_in_set(key, member, at, window_ms)
  if redis.call('ZADD', key, at, member) == 1 then
    redis.call('EXPIRE', key, $ttl_extra_s + window_ms / 1000)
  end
  local rank = redis.call('ZRANK', key, member)
  if rank >= $prune_from_rank then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (at - window_ms - $grace_ms))
    rank = redis.call('ZRANK', key, member)
  end
  return rank
end

local answers = {}
for i = 1, #events, $stride do
  local kind, id, at, of, _, visitor, network = unpack(events, i, i + $stride - 1)
  local bits = 0
  if kind == $click then
    bits = click(hash_of_event[i], visitor, id, at, of)
    local prefixes = prefixes_of_event[i]
    if prefixes then
      bits = bits + prefix_click(prefixes, network, visitor, at, of)
    end
  elseif kind == $impression then
    bits = first_seen(hash_of_event[i], visitor, id)
  elseif network ~= '' then
    local window_key = 'ct:w:x:' .. of .. ':' .. network
    local rank = place_in_set(window_key, id, at, $prefix_window_ms)
    if rank >= $prefix_limit then
      local back = rank - $prefix_limit
      local entry = redis.call('ZRANGE', window_key, back, back, 'WITHSCORES')
      if at - tonumber(entry[2]) < $prefix_window_ms then
        bits = $prefix_burst
      end
    end
  end
  answers[(i + $stride - 1) / $stride] = bits
end

for _, hash in ipairs(hashes) do
  local writes, placed, added = hash.writes, hash.placed, hash.added
  if added then  -- a prefixes' hash: its writes are its prefixes, each gets its window now
    local values = hash.values
    for j = #writes, 1, -1 do
      local network = writes[j]
      writes[2 * j - 1] = network
      writes[2 * j] = stored_window(values[network] or '', added[network])
    end
    writes[#writes + 1], writes[#writes + 2] = '', hash_table_marker
    redis.set_repl(redis.REPL_NONE)  -- in memory only
  elseif placed then  -- a visit hash's writes are its visitors: each gets its value now
    local values = hash.values
    for j = #writes, 1, -1 do
      local visitor = writes[j]
      local value = values[visitor]
      if placed[visitor] ~= 0 then
        value = trimmed(value)
      end
      writes[2 * j - 1], writes[2 * j] = visitor, value
    end
  end
  for from = 1, #writes, 2 * $per_call do
    redis.call('HSET', hash.name, unpack(writes, from, math.min(from + 2 * $per_call - 1, #writes)))
  end
  if added then
    redis.call('EXPIRE', hash.name, hash.ttl_s)
    redis.set_repl(redis.REPL_ALL)
  else
    redis.call('EXPIRE', hash.name, $unique_ttl_s)
  end
end
for key in pairs(overflows) do
  redis.call('EXPIRE', key, $unique_ttl_s)
end
return answers
