#!/usr/bin/env python3
"""HF renders of the DeepSeek-V3 chat template -> tests/fixtures/chat/cases.jsonl (checked by tests/test_chat.c).

Usage (from the repository root; nothing is downloaded, HF_HUB_OFFLINE=1 is set here):

    python3 tools/ref/make_chat_fixtures.py                      # writes tests/fixtures/chat/cases.jsonl
    python3 tools/ref/make_chat_fixtures.py --out /tmp/cases.jsonl --check   # compare with the committed file

Needs transformers + jinja2 + tokenizers (tools/ref/requirements.txt). Re-running rewrites a byte-identical file
(cases are fixed; no randomness). The fixtures are committed data; the C tests never run this script.

Each line is one JSON object:
    name                   case name
    messages               the OpenAI-style messages list (as the C side parses it)
    add_generation_prompt  bool
    text                   the rendered prompt
    ids                    its token ids, HF `apply_chat_template(tokenize=True)` semantics: the rendered text
                           encoded with add_special_tokens=False (the template emits BOS itself)
    hf_apply               "ok" if `tokenizer.apply_chat_template(messages, tokenize=False, ...)` of the installed
                           transformers returns `text` (and tokenize=True returns `ids`); otherwise the error it
                           raised (see below)
    ids_add_special        what `tokenizer(text)["input_ids"]` (add_special_tokens=True) gives: shows whether the
                           installed transformers would double the BOS when a rendered prompt is re-encoded

How `text` is made. `text` is rendered with transformers' own `render_jinja_template` (the same compiled
ImmutableSandboxedEnvironment with trim_blocks/lstrip_blocks that `apply_chat_template` uses, bos_token and the other
special-token strings passed as in `apply_chat_template`). It is called directly because transformers 5.x's
`apply_chat_template` first drops every key whose value is None (`_normalize_chat_messages`), so an assistant
message with `"content": null` reaches the template without a `content` key and this template raises
`UndefinedError: 'dict object' has no attribute 'content'`: tool-calling turns cannot be rendered through
`apply_chat_template` with transformers >= 5 at all. With `content: None` kept (transformers 4.x behaviour) the
template renders as written. For every case without a null, both paths are run and must agree.

`ids` are checked against `tokenizers.Tokenizer.from_file("models/deepseek-v3/tokenizer.json").encode(text,
add_special_tokens=False)` too (the oracle the C tokenizer is tested against; see
shared/spec/reference-oracle.md §6); the script fails if they differ.
"""
import argparse
import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

MODEL = "models/deepseek-v3"


def tc(name, arguments, type_="function"):
    return {"type": type_, "function": {"name": name, "arguments": arguments}}


def cases():
    S = {"role": "system", "content": "You are a helpful assistant."}
    three_turn = [
        S,
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]
    weather1 = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [tc("get_weather", '{"city": "Paris"}')]},
        {"role": "tool", "content": "18C sunny"},
        {"role": "assistant", "content": "It is 18C and sunny."},
    ]
    two_calls = [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": None, "tool_calls": [tc("f", '{"a":1}'), tc("g", '{"b":2}')]},
        {"role": "tool", "content": "r1"},
        {"role": "tool", "content": "r2"},
    ]
    three_calls = [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Do three things."},
        {"role": "assistant", "content": None,
         "tool_calls": [tc("a", "{}"), tc("b", '{"x": [1, 2, 3]}'), tc("c", '{"s": "line1\\nline2"}')]},
        {"role": "tool", "content": "A"},
        {"role": "tool", "content": "B"},
        {"role": "tool", "content": "C"},
        {"role": "assistant", "content": "Done: A, B, C."},
    ]
    two_turns = weather1 + [
        {"role": "user", "content": "And London?"},
        {"role": "assistant", "content": None, "tool_calls": [tc("get_weather", '{"city": "London"}')]},
        {"role": "tool", "content": "12C rain"},
    ]
    c = []

    def add(name, msgs, gen):
        c.append((name, msgs, gen))

    add("single_user_gen", [{"role": "user", "content": "Hi"}], True)
    add("single_user_nogen", [{"role": "user", "content": "Hi"}], False)
    add("spec_three_turn_gen", three_turn, True)
    add("spec_three_turn_nogen", three_turn, False)
    add("spec_vector_system_user_assistant",
        [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello"}], False)
    add("two_systems_around_user",
        [{"role": "system", "content": "A"}, {"role": "user", "content": "u"}, {"role": "system", "content": "B"}],
        True)
    add("leading_and_trailing_system",
        [{"role": "system", "content": "First."}, {"role": "user", "content": "q"},
         {"role": "assistant", "content": "a"}, {"role": "system", "content": "Last."}], True)
    add("three_systems_one_empty",
        [{"role": "system", "content": "X"}, {"role": "system", "content": ""}, {"role": "system", "content": "Z\n"},
         {"role": "user", "content": "go"}], True)
    add("system_only", [{"role": "system", "content": "Only a system prompt."}], True)
    add("no_system_assistant_first",
        [{"role": "assistant", "content": "I speak first."}, {"role": "user", "content": "ok"}], True)
    add("unicode_emoji",
        [{"role": "system", "content": "Réponds en français. 日本語もOK。"},
         {"role": "user", "content": "👩‍👩‍👧‍👦 family, 🇫🇷 flag, e\u0301 combining, العربية, 中文测试, Ωμέγα, \u00a0nbsp\u3000ideo"},
         {"role": "assistant", "content": "😀 Très bien — ありがとう！"},
         {"role": "user", "content": "𝕏 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0010fffd end"}], True)
    add("empty_strings",
        [{"role": "system", "content": ""}, {"role": "user", "content": ""}, {"role": "assistant", "content": ""},
         {"role": "user", "content": ""}], True)
    add("special_tokens_inside_content",
        [{"role": "user", "content": "Say <｜User｜> and <｜Assistant｜> and <｜end▁of▁sentence｜> literally."},
         {"role": "assistant", "content": "<｜begin▁of▁sentence｜>ok<｜tool▁sep｜>"},
         {"role": "user", "content": "<|EOT|><｜User｜><｜User｜>"}], True)
    add("whitespace_and_code",
        [{"role": "user", "content": "  leading spaces\n\n\ttab\r\nwindows\n   \n"},
         {"role": "assistant", "content": "```python\ndef f(x):\n    return x * 2\n```\n"},
         {"role": "user", "content": "\n"}], True)
    add("spec_one_tool_call_then_user", weather1 + [{"role": "user", "content": "Thanks"}], True)
    add("one_tool_call_end_assistant_nogen", weather1, False)
    add("spec_two_calls_end_tool_gen", two_calls, True)
    add("two_calls_end_tool_nogen", two_calls, False)
    add("three_calls_answer_nogen", three_calls, False)
    add("spec_two_tool_turns_end_tool_gen", two_turns, True)
    add("two_tool_turns_answer_then_user",
        two_turns + [{"role": "assistant", "content": "Cooler in London."}, {"role": "user", "content": "Bye"}], True)
    add("tool_call_pending_no_result",
        [{"role": "user", "content": "Weather?"},
         {"role": "assistant", "content": None, "tool_calls": [tc("get_weather", '{"city": "Rome"}')]}], True)
    add("tool_result_then_user_no_outputs_end",
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [tc("f", "{}")]},
         {"role": "tool", "content": "r"}, {"role": "user", "content": "next"}], True)
    add("tool_result_then_system_keeps_tool_state",
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [tc("f", "{}")]},
         {"role": "tool", "content": "r"}, {"role": "system", "content": "late system"}], True)
    add("tool_result_then_second_call_turn",
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [tc("f", "{}")]},
         {"role": "tool", "content": "r"},
         {"role": "assistant", "content": None, "tool_calls": [tc("g", '{"k": "v"}'), tc("h", "[]")]},
         {"role": "tool", "content": "r2"}, {"role": "tool", "content": "r3"}], True)
    add("content_with_tool_calls_ignored",
        [{"role": "user", "content": "q"},
         {"role": "assistant", "content": "I will call f.", "tool_calls": [tc("f", "{}")]},
         {"role": "user", "content": "ok"}], True)
    add("null_content_no_tool_calls",
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}, {"role": "user", "content": "again"}],
        True)
    add("tool_unicode_args_other_type",
        [{"role": "user", "content": "搜索"},
         {"role": "assistant", "content": None,
          "tool_calls": [tc("búsqueda_web", '{"q": "東京 天気 ☀️", "n": 3}'), tc("py", "print('hi')\n", "code")]},
         {"role": "tool", "content": "晴れ 🌤"}, {"role": "tool", "content": ""},
         {"role": "assistant", "content": "東京は晴れです。"}], False)
    add("tool_output_first_without_call",
        [{"role": "tool", "content": "orphan output"}, {"role": "assistant", "content": "seen"}], True)
    add("long_multi_turn",
        [S] + [m for k in range(6) for m in (
            {"role": "user", "content": f"Question {k}: what is {k} squared?"},
            {"role": "assistant", "content": f"{k} squared is {k * k}."})] +
        [{"role": "user", "content": "Thanks!"}], True)
    return c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/fixtures/chat/cases.jsonl")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--check", action="store_true", help="also compare --out with the committed fixture file")
    a = ap.parse_args()

    import copy
    import tokenizers
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils.chat_template_utils import render_jinja_template

    tok = AutoTokenizer.from_pretrained(a.model)
    raw = tokenizers.Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    with open(os.path.join(a.model, "tokenizer_config.json"), encoding="utf-8") as f:
        template = json.load(f)["chat_template"]
    assert tok.chat_template == template, "AutoTokenizer did not load the config's chat_template"

    lines = []
    n_apply_ok = 0
    for name, msgs, gen in cases():
        rendered, _ = render_jinja_template(conversations=[copy.deepcopy(msgs)], chat_template=template,
                                            add_generation_prompt=gen, **tok.special_tokens_map)
        text = rendered[0]
        ids = raw.encode(text, add_special_tokens=False).ids
        hf_ids = tok(text, add_special_tokens=False)["input_ids"]
        if hf_ids != ids:
            sys.exit(f"{name}: transformers and tokenizers disagree on ids")
        try:
            t2 = tok.apply_chat_template(copy.deepcopy(msgs), tokenize=False, add_generation_prompt=gen)
            i2 = tok.apply_chat_template(copy.deepcopy(msgs), tokenize=True, add_generation_prompt=gen,
                                         return_dict=True)["input_ids"]
            if t2 != text or i2 != ids:
                sys.exit(f"{name}: apply_chat_template disagrees with render_jinja_template")
            hf_apply = "ok"
            n_apply_ok += 1
        except Exception as e:  # noqa: BLE001 - recorded in the fixture
            hf_apply = f"{type(e).__name__}: {e}"
        lines.append(json.dumps({
            "name": name, "messages": msgs, "add_generation_prompt": gen, "text": text, "ids": ids,
            "hf_apply": hf_apply, "ids_add_special": tok(text)["input_ids"],
        }, ensure_ascii=False))
    data = "\n".join(lines) + "\n"
    if a.check:
        with open("tests/fixtures/chat/cases.jsonl", encoding="utf-8") as f:
            if f.read() != data:
                sys.exit("generated cases differ from tests/fixtures/chat/cases.jsonl")
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(data)
    print(f"{a.out}: {len(lines)} cases ({n_apply_ok} also through apply_chat_template), "
          f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()
