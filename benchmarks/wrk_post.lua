-- POST a sendMessage webhook with the shared-secret header.
-- Usage: wrk -s wrk_post.lua <url> -- <secret> [conversations] [run-id]
-- Conversation ids cycle over `conversations` (default 1000) distinct values; every request has
-- a unique messageId (run id + thread id + counter) so de-duplication never short-circuits,
-- even when the same server is loaded again in a later repetition.

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local secret = "s3cret"
local conversations = 1000
local counter = 0
local run_id = "r"
local template = '{"botId":"618a30beee4e8e87d2f94015","channel":"chat","data":{' ..
  '"eventType":"sendMessage","platformConversationId":"conv-%d","type":"text",' ..
  '"replyId":"618a30be1c2ffe001ab1078f","messageId":"%s-%d-%d","confidence":0.93,' ..
  '"text":"Hello, this is a bot text message","buttons":[],"carouselCards":[]}}'
local headers = {}

function init(args)
  if args[1] ~= nil then secret = args[1] end
  if args[2] ~= nil then conversations = tonumber(args[2]) end
  if args[3] ~= nil then run_id = args[3] end
  headers["Authorization"] = secret
  headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = string.format(template, counter % conversations, run_id, tid or 0, counter)
  return wrk.format("POST", nil, headers, body)
end
