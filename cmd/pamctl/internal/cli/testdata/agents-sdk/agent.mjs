// An agent built with the OpenAI Agents SDK (JS), run through pamctl's
// proxy by TestEndToEndAgentsSDKToolFirewall. It has two tools: get_weather
// (allowed) and delete_repo (a tool_call rule denies it). It prints one JSON
// line: the run's final output, the tools that actually ran, the text of
// every message the model (or pamctl in its place) wrote, and an error.
//
// Environment: OPENAI_BASE_URL, OPENAI_API_KEY (a pamctl token),
// AGENT_API (responses | chat_completions), AGENT_STREAM (1: streamed),
// AGENT_INPUT (the user's message).
import { Agent, run, tool, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled } from '@openai/agents';
import OpenAI from 'openai';
import { z } from 'zod';

setTracingDisabled(true);
setDefaultOpenAIClient(new OpenAI({
  apiKey: process.env.OPENAI_API_KEY,
  baseURL: process.env.OPENAI_BASE_URL,
  maxRetries: 0,
}));
setOpenAIAPI(process.env.AGENT_API || 'responses');

const ran = [];
const getWeather = tool({
  name: 'get_weather',
  description: 'The weather in a city.',
  parameters: z.object({ city: z.string() }),
  execute: async ({ city }) => {
    ran.push(`get_weather:${city}`);
    return `Sunny in ${city}.`;
  },
});
const deleteRepo = tool({
  name: 'delete_repo',
  description: 'Delete a repository for good.',
  parameters: z.object({ repo: z.string() }),
  execute: async ({ repo }) => {
    ran.push(`delete_repo:${repo}`);
    return `Deleted ${repo}.`;
  },
});
const agent = new Agent({
  name: 'ops',
  instructions: 'You help with operations.',
  model: 'gpt-4o-mini',
  tools: [getWeather, deleteRepo],
});

const out = { finalOutput: null, ran, messages: [], error: null };
try {
  let result;
  if (process.env.AGENT_STREAM === '1') {
    result = await run(agent, process.env.AGENT_INPUT, { stream: true });
    for await (const _ of result) {
      // every event, as an app that renders the stream would
    }
    await result.completed;
  } else {
    result = await run(agent, process.env.AGENT_INPUT);
  }
  out.finalOutput = result.finalOutput ?? null;
  for (const item of result.newItems) {
    if (item.type === 'message_output_item') {
      out.messages.push((item.rawItem.content || []).filter((c) => c.type === 'output_text').map((c) => c.text).join(''));
    }
  }
} catch (err) {
  out.error = String(err && err.stack ? err.stack : err);
}
console.log(JSON.stringify(out));
