"""The Redis store's Lua scripts: every change that touches more than one key is one script,
which Redis runs atomically (a transition and its task's new state are written together or not
at all). Lua never parses the JSON values, it only moves them and keeps the indexes, which
Python computes. Key names beyond ``KEYS`` are derived from the prefix (see ``connection``).
"""

from __future__ import annotations

from typing import Final

# Writes one task: identity/status, health, and its place in the retention index.
# ARGV: prefix, then (field, spec, health, ended_at or "") per task. KEYS: tasks, health, ended.
_LUA_SAVE_TASKS: Final = """
for i = 2, #ARGV, 4 do
    local field = ARGV[i]
    redis.call('HSET', KEYS[1], field, ARGV[i + 1])
    redis.call('HSET', KEYS[2], field, ARGV[i + 2])
    if ARGV[i + 3] == '' then
        redis.call('ZREM', KEYS[3], field)
    else
        redis.call('ZADD', KEYS[3], ARGV[i + 3], field)
    end
end
return #ARGV
"""

# ARGV: (field, health) pairs. KEYS: tasks, health. Unknown tasks are skipped, never created.
_LUA_SAVE_HEALTH: Final = """
for i = 1, #ARGV, 2 do
    if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
        redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    end
end
return 0
"""

# The task's new state and its transition, in one step; returns the new seq.
# KEYS: tasks, health, ended, seq, transitions, transitions:seq, task-transitions:{field}.
# ARGV: field, spec, health, ended_at or "", transition.
_LUA_RECORD_TRANSITION: Final = """
-- Redis does not roll a script back: refuse before the first write whatever a later command
-- would fail on (a key of the wrong type), so the step is all or nothing.
local expected = {'hash', 'hash', 'zset', 'string', 'hash', 'zset', 'list'}
for i, kind in ipairs(expected) do
    local actual = redis.call('TYPE', KEYS[i])['ok']
    if actual ~= 'none' and actual ~= kind then
        return redis.error_reply('key ' .. KEYS[i] .. ' holds a ' .. actual .. ', not a ' .. kind)
    end
end
local seq_value = redis.call('GET', KEYS[4])
if seq_value and not tonumber(seq_value) then
    return redis.error_reply('key ' .. KEYS[4] .. ' does not hold a sequence number')
end
local field = ARGV[1]
local seq = redis.call('INCR', KEYS[4])
-- Never hand a seq out twice, even if the counter was lost while the history was not.
local top = redis.call('ZREVRANGE', KEYS[6], 0, 0)[1]
if top and seq <= tonumber(top) then
    seq = tonumber(top) + 1
    redis.call('SET', KEYS[4], seq)
end
redis.call('HSET', KEYS[1], field, ARGV[2])
redis.call('HSET', KEYS[2], field, ARGV[3])
if ARGV[4] == '' then
    redis.call('ZREM', KEYS[3], field)
else
    redis.call('ZADD', KEYS[3], ARGV[4], field)
end
redis.call('HSET', KEYS[5], seq, ARGV[5])
redis.call('ZADD', KEYS[6], seq, seq)
redis.call('RPUSH', KEYS[7], seq)
return seq
"""

# Shared by delete and purge: a task, its transitions and its alert records.
# KEYS: tasks, health, ended, transitions, transitions:seq, alerts, alerts:task.
_LUA_DROP_TASK: Final = """
local function drop(prefix, field)
    local tkey = prefix .. 'task-transitions:' .. field
    for _, seq in ipairs(redis.call('LRANGE', tkey, 0, -1)) do
        redis.call('HDEL', KEYS[4], seq)
        redis.call('ZREM', KEYS[5], seq)
    end
    redis.call('DEL', tkey)
    local akey = prefix .. 'task-alerts:' .. field
    for _, fp in ipairs(redis.call('SMEMBERS', akey)) do
        redis.call('HDEL', KEYS[6], fp)
        redis.call('HDEL', KEYS[7], fp)
    end
    redis.call('DEL', akey)
    redis.call('HDEL', KEYS[1], field)
    redis.call('HDEL', KEYS[2], field)
    redis.call('ZREM', KEYS[3], field)
end
"""

# ARGV: prefix, field.
_LUA_DELETE_TASK: Final = (
    _LUA_DROP_TASK
    + """
drop(ARGV[1], ARGV[2])
return 0
"""
)

# ARGV: prefix, exclusive cutoff, at most this many tasks. The ended index holds final tasks
# only, by ended_at.
_LUA_PURGE: Final = (
    _LUA_DROP_TASK
    + """
local fields = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[2], 'LIMIT', 0, ARGV[3])
for _, field in ipairs(fields) do
    drop(ARGV[1], field)
end
return fields
"""
)

# One task's transitions by seq. KEYS: task-transitions:{field}, transitions.
# ARGV: limit (-1: all), newest first (1/0). Returns seq, value, seq, value...
_LUA_TASK_TRANSITIONS: Final = """
local limit = tonumber(ARGV[1])
local seqs
if limit == 0 then
    return {}
elseif ARGV[2] == '1' then
    seqs = redis.call('LRANGE', KEYS[1], limit < 0 and 0 or -limit, -1)
    local n = #seqs
    for i = 1, math.floor(n / 2) do
        seqs[i], seqs[n - i + 1] = seqs[n - i + 1], seqs[i]
    end
else
    seqs = redis.call('LRANGE', KEYS[1], 0, limit < 0 and -1 or limit - 1)
end
local out = {}
for _, seq in ipairs(seqs) do
    out[#out + 1] = seq
    out[#out + 1] = redis.call('HGET', KEYS[2], seq)
end
return out
"""

# The fleet's newest transitions. KEYS: transitions:seq, transitions. ARGV: limit (> 0).
_LUA_RECENT_TRANSITIONS: Final = """
local out = {}
for _, seq in ipairs(redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
    out[#out + 1] = seq
    out[#out + 1] = redis.call('HGET', KEYS[2], seq)
end
return out
"""

# ARGV: prefix, then (fingerprint, record, task field or "") per record.
# KEYS: alerts, alerts:task.
_LUA_SAVE_ALERTS: Final = """
local prefix = ARGV[1]
for i = 2, #ARGV, 3 do
    local fp, task = ARGV[i], ARGV[i + 2]
    local old = redis.call('HGET', KEYS[2], fp)
    if old and old ~= task then
        redis.call('SREM', prefix .. 'task-alerts:' .. old, fp)
    end
    redis.call('HSET', KEYS[1], fp, ARGV[i + 1])
    if task == '' then
        redis.call('HDEL', KEYS[2], fp)
    else
        redis.call('HSET', KEYS[2], fp, task)
        redis.call('SADD', prefix .. 'task-alerts:' .. task, fp)
    end
end
return 0
"""

# ARGV: prefix, fingerprint. KEYS: alerts, alerts:task.
_LUA_DELETE_ALERT: Final = """
local old = redis.call('HGET', KEYS[2], ARGV[2])
if old then
    redis.call('SREM', ARGV[1] .. 'task-alerts:' .. old, ARGV[2])
end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
return 0
"""


# Reads and small writes are scripts too: one way to talk to Redis, typed alike in every
# supported redis-py version.
# KEYS: tasks, health. Both hashes in one atomic read: a consistent snapshot.
_LUA_LOAD_TASKS: Final = """
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""

# KEYS: tasks, health. ARGV: task field. Returns {spec or false, health or false}.
_LUA_LOAD_TASK: Final = """
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}
"""

# KEYS: any hash. Returns it flat (field, value, field, value...).
_LUA_HGETALL: Final = """
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: meta. ARGV: field.
_LUA_META_GET: Final = """
return redis.call('HGET', KEYS[1], ARGV[1])
"""

# KEYS: meta. ARGV: field, value.
_LUA_META_SET: Final = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 0
"""

# KEYS: meta. ARGV: this layout's version. Records it on first use; returns what is recorded.
LUA_SCHEMA: Final = """
redis.call('HSETNX', KEYS[1], 'schema_version', ARGV[1])
return redis.call('HGET', KEYS[1], 'schema_version')
"""

SCRIPTS: Final = {
    "save_tasks": _LUA_SAVE_TASKS,
    "save_health": _LUA_SAVE_HEALTH,
    "record_transition": _LUA_RECORD_TRANSITION,
    "delete_task": _LUA_DELETE_TASK,
    "purge": _LUA_PURGE,
    "task_transitions": _LUA_TASK_TRANSITIONS,
    "recent_transitions": _LUA_RECENT_TRANSITIONS,
    "save_alerts": _LUA_SAVE_ALERTS,
    "delete_alert": _LUA_DELETE_ALERT,
    "load_tasks": _LUA_LOAD_TASKS,
    "load_task": _LUA_LOAD_TASK,
    "hgetall": _LUA_HGETALL,
    "meta_get": _LUA_META_GET,
    "meta_set": _LUA_META_SET,
}
