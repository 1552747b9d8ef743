#!/usr/bin/env python3
"""Renders dsrt's own conversations with DeepSeek's official V3.2 encoder to make the chat golden files.

    python3 tools/reference/make_chat_golden.py --encoder-dir /work/ref-encoding

--encoder-dir holds the official encoding_dsv32.py (from DeepSeek-V3.2's `encoding/` folder; a copy ships
with transformers' source under src/transformers/models/deepseek_v32/deepseek_files/encoding/). It is
imported as it is, never copied into this repository.

Reads tests/data/chat/conversations.json and writes, under tests/data/chat/expected/:
  <name>.request.json  the case's request alone (what `dsrt encode --request` takes)
  <name>.txt           encode_messages(messages, thinking_mode, drop_thinking, add_default_bos_token=True);
                       drop_thinking is the case's "drop_thinking" (default true, the official default)
  <name>.turns.json    for every assistant message i: messages_json (m_0..m_i as JSON text); completion, the
                       text the model would generate for m_i, i.e. encode_messages([m_i], context=m_0..m_{i-1})
                       as the official test makes it; parsed_json, what the official parser returns for it
                       (json.dumps) or parse_error; expected, the original message as the parser can give it
                       back (content or "", reasoning in thinking mode, names, arguments in json.dumps form)
  <name>.error         for the "errors" cases: the official encoder's exception (these must fail in dsrt too)

A request maps to messages as `dsrt encode` maps it: request-level "tools" and "response_format" go to
the first message when it is a system message, else to a {"role": "system"} inserted before it.
"""
import argparse
import copy
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CHAT = os.path.join(HERE, "..", "..", "tests", "data", "chat")


def load_encoder(directory):
    path = os.path.join(directory, "encoding_dsv32.py")
    if not os.path.exists(path):
        sys.exit(f"{path}: not found (see --help for where the official encoder comes from)")
    spec = importlib.util.spec_from_file_location("encoding_dsv32", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def request_to_messages(req):
    msgs = copy.deepcopy(req["messages"])
    tools, rf = req.get("tools"), req.get("response_format")
    if tools or rf:
        if not msgs or msgs[0].get("role") != "system":
            msgs.insert(0, {"role": "system"})
        if tools:
            msgs[0]["tools"] = copy.deepcopy(tools)
        if rf:
            msgs[0]["response_format"] = copy.deepcopy(rf)
    return msgs


def write_request(out_dir, case):
    with open(os.path.join(out_dir, case["name"] + ".request.json"), "w", encoding="utf-8") as f:
        json.dump(case["request"], f, ensure_ascii=False, indent=1)
        f.write("\n")


def canonical_arguments(msg):
    out = []
    for tc in msg.get("tool_calls") or []:
        out.append(json.dumps(json.loads(tc["function"]["arguments"]), ensure_ascii=False))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder-dir", default=os.environ.get("DSRT_DSV32_ENCODING", "/work/ref-encoding"))
    args = ap.parse_args()
    enc = load_encoder(args.encoder_dir)

    with open(os.path.join(CHAT, "conversations.json"), encoding="utf-8") as f:
        conv = json.load(f)
    out_dir = os.path.join(CHAT, "expected")
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):  # start clean: a removed case leaves no stale file
        os.remove(os.path.join(out_dir, name))

    for case in conv["cases"]:
        mode = "thinking" if case["thinking"] else "chat"
        drop = case.get("drop_thinking", True)
        msgs = request_to_messages(case["request"])
        write_request(out_dir, case)
        prompt = enc.encode_messages(copy.deepcopy(msgs), thinking_mode=mode, drop_thinking=drop,
                                     add_default_bos_token=True)
        with open(os.path.join(out_dir, case["name"] + ".txt"), "w", encoding="utf-8", newline="") as f:
            f.write(prompt)
        turns = []
        for i, m in enumerate(msgs):
            if m.get("role") != "assistant":
                continue
            turn = {"index": i, "messages_json": json.dumps(msgs[: i + 1], ensure_ascii=False)}
            try:
                completion = enc.encode_messages(copy.deepcopy([m]), context=copy.deepcopy(msgs[:i]),
                                                 thinking_mode=mode, drop_thinking=drop, add_default_bos_token=True)
            except Exception as e:  # the official encoder refuses this turn on its own
                turn["encode_error"] = f"{type(e).__name__}: {e}"
                turns.append(turn)
                continue
            turn["completion"] = completion
            try:
                parsed = enc.parse_message_from_completion_text(completion, thinking_mode=mode)
                turn["parsed_json"] = json.dumps(parsed, ensure_ascii=False)
            except Exception as e:
                turn["parse_error"] = f"{type(e).__name__}: {e}"
            turn["expected"] = {
                "content": m.get("content") or "",
                "reasoning_content": (m.get("reasoning_content") or "") if case["thinking"] else "",
                "tool_calls": [{"name": tc["function"]["name"], "arguments": a}
                               for tc, a in zip(m.get("tool_calls") or [], canonical_arguments(m))],
            }
            if "parsed_json" in turn:
                got = json.loads(turn["parsed_json"])
                want = turn["expected"]
                same = (got["content"] == want["content"] and got["reasoning_content"] == want["reasoning_content"]
                        and [(t["function"]["name"], t["function"]["arguments"]) for t in got["tool_calls"]]
                        == [(t["name"], t["arguments"]) for t in want["tool_calls"]])
                if not same:
                    sys.exit(f"{case['name']} turn {i}: the official parser does not give the message back")
            turns.append(turn)
        with open(os.path.join(out_dir, case["name"] + ".turns.json"), "w", encoding="utf-8") as f:
            json.dump({"name": case["name"], "thinking": case["thinking"], "turns": turns}, f, ensure_ascii=False,
                      indent=1)
            f.write("\n")
        print(f"{case['name']}: {len(prompt)} characters, {len(turns)} assistant turns")

    for case in conv.get("errors", []):
        mode = "thinking" if case["thinking"] else "chat"
        write_request(out_dir, case)
        try:
            enc.encode_messages(request_to_messages(case["request"]), thinking_mode=mode,
                                drop_thinking=case.get("drop_thinking", True), add_default_bos_token=True)
        except Exception as e:
            with open(os.path.join(out_dir, case["name"] + ".error"), "w", encoding="utf-8") as f:
                f.write(f"{type(e).__name__}: {e}\n")
            print(f"{case['name']}: fails as expected ({type(e).__name__})")
            continue
        sys.exit(f"{case['name']}: the official encoder accepted it; move it out of 'errors'")


if __name__ == "__main__":
    main()
