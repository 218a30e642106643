#!/usr/bin/env python3
"""Drive the proxy over one keep-alive HTTP/1.1 connection.

usage: drive.py PORT WORKLOAD N
  small   : non-stream "Hello", max_tokens 64
  stream  : stream [[mock:text:1000]], max_tokens 1100
  cc      : Claude Code text1 fixture (~50 KB), marker [[mock:text:1024]], streamed
Prints requests, tokens (text_delta events), bytes received.
"""
import copy
import http.client
import json
import pathlib
import sys

port, workload, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
FIX = str(pathlib.Path(__file__).resolve().parents[2] / "fixtures/claude-code/text1/01_messages_stream.json")

def body_for(w):
    if w == "small":
        return {"model": "claude-sonnet-4-5", "max_tokens": 64,
                "messages": [{"role": "user", "content": "Hello"}]}, False
    if w == "stream":
        return {"model": "claude-sonnet-4-5", "max_tokens": 1100, "stream": True,
                "messages": [{"role": "user", "content": "[[mock:text:1000]]"}]}, True
    if w == "cc":
        rec = json.load(open(FIX))
        b = copy.deepcopy(rec["body"])
        # marker into the last user message
        for m in reversed(b["messages"]):
            if m["role"] == "user":
                if isinstance(m["content"], str):
                    m["content"] += " [[mock:text:1024]]"
                else:
                    m["content"].append({"type": "text", "text": "[[mock:text:1024]]"})
                break
        b["stream"] = True
        return b, True
    raise SystemExit("unknown workload")

body, stream = body_for(workload)
raw = json.dumps(body).encode()
headers = {"content-type": "application/json", "anthropic-version": "2023-06-01",
           "x-api-key": "bench"}
if workload == "cc":
    rec = json.load(open(FIX))
    for k, v in rec["headers"].items():
        if k.lower() in ("user-agent", "x-claude-code-session-id", "anthropic-beta", "x-app",
                         "x-stainless-arch", "x-stainless-lang", "x-stainless-os",
                         "x-stainless-package-version", "x-stainless-retry-count",
                         "x-stainless-runtime", "x-stainless-runtime-version",
                         "x-stainless-timeout", "accept", "authorization"):
            headers[k] = v
conn = http.client.HTTPConnection("127.0.0.1", port)
tokens = 0
nbytes = 0
errors = 0
for i in range(n):
    conn.request("POST", "/v1/messages", body=raw, headers=headers)
    r = conn.getresponse()
    data = r.read()
    nbytes += len(data)
    if r.status != 200:
        errors += 1
        if errors < 3:
            print("status", r.status, data[:300], file=sys.stderr)
        continue
    if stream:
        text = data.decode()
        tokens += text.count('"type":"text_delta"')
        if 'message_stop' not in text:
            errors += 1
            print("no message_stop", text[-300:], file=sys.stderr)
print(json.dumps({"workload": workload, "n": n, "body_bytes": len(raw), "tokens": tokens,
                  "bytes": nbytes, "errors": errors}))
