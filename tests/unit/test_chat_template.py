"""Chat templates render as transformers renders them, in a process of their own whose time,
memory and output bounds really stop a hostile template."""

import os
import time

import pytest

from deployments.backends.chat_template import render_chat_template
from deployments.backends.template_worker import environment
from deployments.backends.torch_backend import TorchBackend
from hubserve.config.limits import LimitsConfig
from hubserve.errors import InvalidInput
from tests.tiny_models import CHAT_TEMPLATE, bpe_tokenizer

#: SmolLM2-135M-Instruct's chat template, as its repo ships it.
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: What else templates use: namespaces, loop controls, tojson, trim, the generation tag,
#: special tokens, raise_exception, and the tools and documents variables.
FEATURES = """
{%- set ns = namespace(n=0) -%}
{{ bos_token }}
{%- for m in messages %}
  {%- if m.role == 'system' %}{% continue %}{% endif %}
  {%- set ns.n = ns.n + 1 %}
  {%- if m.role == 'assistant' %}{% generation %}{{ m.content | tojson }}{% endgeneration %}
  {%- else %}{{ m['content'] | trim }}{% endif %}
  {%- if ns.n > 3 %}{% break %}{% endif %}
{% endfor %}
{%- if messages | length > 10 %}{{ raise_exception('Too many messages for this template') }}{% endif %}
{%- if add_generation_prompt %}<|assistant|>{% endif %}
{{ eos_token }} {{ tools is none }} {{ documents is none }} {{ range(3) | list }}
"""
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}"
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "  Où est la gare ? \"quoted\" </s>  "},
    {"role": "assistant", "content": "À gauche — 🚉"},
    {"role": "user", "content": "Merci"},
]
CONTEXT = {"messages": CONVERSATION, "add_generation_prompt": True}


def backend_with(template: str, limits: LimitsConfig = LimitsConfig()) -> TorchBackend:
    """A torch backend holding only a tokenizer with ``template`` (what chat_prompt reads)."""
    backend = TorchBackend()
    backend.tokenizer = bpe_tokenizer(with_template=False)
    backend.tokenizer.chat_template = template
    backend.limits = limits
    return backend


@pytest.mark.parametrize("template", [CHAT_TEMPLATE, SMOLLM2, FEATURES], ids=["tiny", "smollm2", "features"])
def test_templates_render_as_transformers_renders_them(template):
    backend = backend_with(template)
    for messages in (CONVERSATION, CONVERSATION[1:2]):
        expected = backend.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert backend.chat_prompt(messages) == expected


def test_the_environment_is_the_one_transformers_renders_in():
    from transformers.utils.chat_template_utils import _compile_jinja_template

    theirs, ours = _compile_jinja_template(SMOLLM2).environment, environment()
    assert type(theirs) is type(ours)
    assert (theirs.trim_blocks, theirs.lstrip_blocks) == (ours.trim_blocks, ours.lstrip_blocks)
    assert set(theirs.filters) == set(ours.filters) and set(theirs.globals) == set(ours.globals)
    tags = [sorted(tag for ext in env.extensions.values() for tag in ext.tags) for env in (theirs, ours)]
    assert tags[0] == tags[1]


def test_a_template_error_is_a_400_naming_it():
    with pytest.raises(InvalidInput, match="refused these messages: Too many messages for this template"):
        backend_with(FEATURES).chat_prompt(CONVERSATION * 3)
    with pytest.raises(InvalidInput, match="has no chat template"):
        backend_with("").chat_prompt(CONVERSATION)


def workers() -> set[int]:
    """The render processes this process started that are alive."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and stat[0] != "Z" and b"template_worker.py" in cmdline:
            found.add(int(pid))
    return found


def test_a_runaway_template_is_stopped_at_its_time_bound():
    limits = LimitsConfig(max_template_seconds=1)
    assert render_chat_template(SMOLLM2, CONTEXT, limits).startswith("<|im_start|>system")
    before = workers()
    start = time.perf_counter()
    with pytest.raises(InvalidInput, match=r"took more than 1s to render \(limits.max_template_seconds\)"):
        render_chat_template(NESTED_LOOPS, CONTEXT, limits)
    assert time.perf_counter() - start < 15
    assert before and not before & workers()  # the process that ran it is gone, not left spinning
    with pytest.raises(InvalidInput, match="took more than"):
        render_chat_template(NESTED_LOOPS, CONTEXT, LimitsConfig(), deadline=time.time() + 0.5)
    assert render_chat_template(SMOLLM2, CONTEXT, limits).startswith("<|im_start|>system")


@pytest.mark.parametrize("template, limits, bound", [
    ("{{ 'x' * 10 ** 10 }}", LimitsConfig(), "limits.max_template_memory_bytes"),
    ("{% set s = 'x' * 300000000 %}{{ s[:3] }}", LimitsConfig(max_template_memory_bytes=256 * 1024**2),
     "limits.max_template_memory_bytes"),
    ("{% for i in range(100000) %}{{ 'abcdefghij' }}{% endfor %}", LimitsConfig(max_template_chars=5000),
     "renders more than 5000 characters for these messages \\(limits.max_template_chars\\)"),
    ("{{ (7 ** 100000000) % 10 }}", LimitsConfig(max_template_seconds=1), "limits.max_template_seconds"),
])
def test_memory_and_output_bounds(template, limits, bound):
    start = time.perf_counter()
    with pytest.raises(InvalidInput, match=bound):
        render_chat_template(template, CONTEXT, limits)
    assert time.perf_counter() - start < 15
    assert render_chat_template(CHAT_TEMPLATE, CONTEXT, limits).endswith("<|assistant|>")
