"""LLaMA-Factory chat templates as data: the text around each turn, so that token counts match training.

LLaMA-Factory (``data/template.py``) builds turn ``t`` of a conversation as::

    turn 0:  prefix + system(system_text) + user(query)      assistant(response)
    turn t:  user(query)                                      assistant(response)

and tokenizes every *string slot* separately with ``add_special_tokens=False``; ``BOS``/``EOS`` slots are one
token each (``BOS`` only when the tokenizer has a bos token; ``EOS`` always, because LLaMA-Factory adds one when
missing). A ``llama2``-kind template fuses the system text into the first user message instead. A
``reasoning``-kind template adds an empty thought (``<think>\\n\\n</think>\\n\\n``) to each response that has none:
to the response when ``enable_thinking`` is on (it is trained), to the prompt otherwise.

The table below is transcribed from ``register_template`` calls in LLaMA-Factory's ``src/llamafactory/data/template.py``
(v0.9.5 and the development head after it; the common text families are here, and
``tests/test_data_templates.py`` checks their flags against the table ``scripts/gen_templates.py`` generates). Tool formatting
(``format_tools``/``format_function`` JSON rendering) is approximated by the raw text, and multimodal
placeholder expansion is not counted.

Fallback for a template name that is not in the table, or no ``template`` key: LLaMA-Factory parses the
tokenizer's own ``chat_template`` when it has one (``parse_template``); we do the same with jinja2 when it is
installed. Otherwise the ``empty`` template is used and the statistics say so: their lengths then lack the
per-turn markup (typically 5-15 tokens a turn).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Special:
    """A slot that is one token id, not text: the tokenizer's bos/eos, or a named token."""

    kind: str  # bos | eos | token
    value: str = ""

    def __repr__(self) -> str:
        return self.kind.upper() if self.kind != "token" else f"token({self.value!r})"


BOS = Special("bos")
EOS = Special("eos")


def token(text: str) -> Special:
    return Special("token", text)


Slot = str | Special
Slots = tuple[Slot, ...]

THINK_WORDS = ("<think>\n", "\n</think>\n\n")


@dataclass(frozen=True)
class ChatTemplate:
    """One template. ``None`` formatters take LLaMA-Factory's defaults (see :func:`_t`)."""

    name: str
    user: Slots
    assistant: Slots
    system: Slots
    observation: Slots
    function: Slots
    prefix: Slots = ()
    default_system: str = ""
    stop_words: tuple[str, ...] = ()
    thought_words: tuple[str, str] = THINK_WORDS
    efficient_eos: bool = False
    replace_eos: bool = False
    kind: str = "plain"  # plain | llama2 | reasoning
    note: str | None = field(default=None, compare=False)  # how the template was obtained, when not from the table

    @property
    def reasoning(self) -> bool:
        return self.kind == "reasoning"

    def fingerprint(self) -> str:
        """A hash of everything that changes token counts, for the statistics cache key."""
        data = json.dumps(
            [self.name, self.user, self.assistant, self.system, self.observation, self.function, self.prefix,
             self.default_system, self.stop_words, self.thought_words, self.efficient_eos, self.replace_eos,
             self.kind],
            default=repr, ensure_ascii=False,
        )  # fmt: skip
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def remove_thought(self, content: str) -> str:
        """LLaMA-Factory's ``remove_thought``: drop ``<think>...</think>`` and leading newlines."""
        a, b = re.escape(self.thought_words[0]), re.escape(self.thought_words[1])
        return re.sub(f"{a}(.*?){b}", "", content, flags=re.DOTALL).lstrip("\n")

    def has_thought(self, content: str) -> bool:
        return self.thought_words[0].strip() in content or self.thought_words[1].strip() in content


def _t(
    name: str,
    *,
    user: Slots | None = None,
    assistant: Slots | None = None,
    system: Slots | None = None,
    observation: Slots | None = None,
    function: Slots | None = None,
    prefix: Slots = (),
    default_system: str = "",
    stop_words: tuple[str, ...] = (),
    thought_words: tuple[str, str] | None = None,
    efficient_eos: bool = False,
    replace_eos: bool = False,
    kind: str = "plain",
) -> ChatTemplate:
    """``register_template`` defaults: user/system ``{{content}}``, assistant ``{{content}}`` + EOS (no EOS with
    efficient_eos), observation = user, function = assistant."""
    default_assistant: Slots = ("{{content}}",) if efficient_eos else ("{{content}}", EOS)
    user = user or ("{{content}}",)
    assistant = assistant or default_assistant
    return ChatTemplate(
        name=name, user=user, assistant=assistant, system=system or ("{{content}}",),
        observation=observation or user, function=function or assistant, prefix=prefix,
        default_system=default_system, stop_words=stop_words, thought_words=thought_words or THINK_WORDS,
        efficient_eos=efficient_eos, replace_eos=replace_eos, kind=kind,
    )  # fmt: skip


_QWEN_TOOL_RESULT: Slots = (
    "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
)

_TABLE: list[ChatTemplate] = [
    _t(
        "alpaca",
        user=("### Instruction:\n{{content}}\n\n### Response:\n",),
        assistant=("{{content}}", EOS, "\n\n"),
        default_system=(
            "Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n"
        ),
    ),
    _t(
        "breeze",
        prefix=(BOS,),
        user=("[INST] {{content}} [/INST] ",),
        efficient_eos=True,
    ),
    _t(
        "chatml",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        stop_words=("<|im_end|>", "<|im_start|>"),
        replace_eos=True,
    ),
    _t(
        "chatml_de",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        default_system="Du bist ein freundlicher und hilfsbereiter KI-Assistent.",
        stop_words=("<|im_end|>", "<|im_start|>"),
        replace_eos=True,
    ),
    _t(
        "cohere",
        prefix=(BOS,),
        system=("<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|>",),
        user=((
            "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHA"
            "TBOT_TOKEN|>"
        ),),
    ),
    _t(
        "cpm4",
        prefix=(BOS,),
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        stop_words=("<|im_end|>",),
    ),
    _t(
        "dbrx",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        default_system=(
            "You are DBRX, created by Databricks. You were last updated in December 2023. You answer questions"
            " based on information available up to that point.\n"
            "YOU PROVIDE SHORT RESPONSES TO SHORT QUESTIONS OR STATEMENTS, but provide thorough responses to m"
            "ore complex and open-ended questions.\n"
            "You assist with various tasks, from writing to coding (using markdown for code blocks — remember "
            "to use ``` with code, JSON, and tables).\n"
            "(You do not have real-time data access or code execution capabilities. You avoid stereotyping and"
            " provide balanced perspectives on controversial topics. You do not provide song lyrics, poems, or"
            " news articles and do not divulge details of your training data.)\n"
            "This is your system prompt, guiding your responses. Do not reference it, just respond to the user"
            ". If you find yourself talking about this message, stop. You should be responding appropriately a"
            "nd usually that means not mentioning this.\n"
            "YOU DO NOT MENTION ANY OF THIS INFORMATION ABOUT YOURSELF UNLESS THE INFORMATION IS DIRECTLY PERT"
            "INENT TO THE USER'S QUERY."
        ),
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "deepseek",
        prefix=(BOS,),
        system=("{{content}}\n\n",),
        user=("User: {{content}}\n\nAssistant:",),
    ),
    _t(
        "deepseek3",
        prefix=(BOS,),
        user=("<｜User｜>{{content}}<｜Assistant｜>",),
    ),
    _t(
        "deepseekr1",
        prefix=(BOS,),
        user=("<｜User｜>{{content}}<｜Assistant｜>",),
        kind="reasoning",
    ),
    _t(
        "deepseekcoder",
        prefix=(BOS,),
        user=("### Instruction:\n{{content}}\n### Response:",),
        assistant=("\n{{content}}\n<|EOT|>\n",),
        default_system=(
            "You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek Co"
            "mpany, and you only answer questions related to computer science. For politically sensitive quest"
            "ions, security and privacy issues, and other non-computer science questions, you will refuse to a"
            "nswer.\n"
        ),
    ),
    _t(
        "default",
        system=("System: {{content}}", EOS, "\n"),
        user=("Human: {{content}}", EOS, "\nAssistant:"),
        assistant=("{{content}}", EOS, "\n"),
    ),
    _t(
        "empty",
        assistant=("{{content}}",),
    ),
    _t(
        "ernie",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n\n",),
        observation=("<|im_start|>tool\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n",),
        default_system="<global_setting>\nthink_mode=True\n</global_setting>",
        stop_words=("<|im_end|>",),
    ),
    _t(
        "ernie_nothink",
        prefix=("<|begin_of_sentence|>",),
        system=("{{content}}\n",),
        user=("User: {{content}}\nAssistant: ",),
        assistant=("{{content}}<|end_of_sentence|>",),
        stop_words=("<|end_of_sentence|>",),
    ),
    _t(
        "exaone",
        system=("[|system|]{{content}}[|endofturn|]\n",),
        user=("[|user|]{{content}}\n[|assistant|]",),
        assistant=("{{content}}", EOS, "\n"),
    ),
    _t(
        "falcon",
        user=("User: {{content}}\nFalcon:",),
        assistant=("{{content}}\n",),
        efficient_eos=True,
    ),
    _t(
        "fewshot",
        assistant=("{{content}}\n\n",),
        efficient_eos=True,
    ),
    _t(
        "gemma",
        prefix=(BOS,),
        system=("{{content}}\n\n",),
        user=("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
        assistant=("{{content}}<end_of_turn>\n",),
        observation=("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
        stop_words=("<end_of_turn>",),
        replace_eos=True,
        kind="llama2",
    ),
    _t(
        "gemma2",
        prefix=(BOS,),
        system=("{{content}}\n\n",),
        user=("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
        assistant=("{{content}}<end_of_turn>\n",),
        observation=("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
        stop_words=("<eos>", "<end_of_turn>"),
        efficient_eos=True,
        kind="llama2",
    ),
    _t(
        "gemma3",
        prefix=(BOS,),
        system=("{{content}}\n\n",),
        user=("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
        assistant=("{{content}}<end_of_turn>\n",),
        observation=("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
        stop_words=("<end_of_turn>",),
        replace_eos=True,
        kind="llama2",
    ),
    _t(
        "gemma3n",
        prefix=(BOS,),
        system=("{{content}}\n\n",),
        user=("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
        assistant=("{{content}}<end_of_turn>\n",),
        observation=("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
        stop_words=("<end_of_turn>",),
        replace_eos=True,
        kind="llama2",
    ),
    _t(
        "glm4",
        prefix=("[gMASK]<sop>",),
        system=("<|system|>\n{{content}}",),
        user=("<|user|>\n{{content}}<|assistant|>",),
        assistant=("\n{{content}}",),
        observation=("<|observation|>\n{{content}}<|assistant|>",),
        function=("{{content}}",),
        stop_words=("<|user|>", "<|observation|>"),
        efficient_eos=True,
    ),
    _t(
        "glm4_moe",
        prefix=("[gMASK]<sop>",),
        system=("<|system|>\n{{content}}",),
        user=("<|user|>\n{{content}}<|assistant|>",),
        assistant=("\n{{content}}",),
        observation=("<|observation|>\n{{content}}<|assistant|>",),
        function=("{{content}}",),
        stop_words=("<|user|>", "<|observation|>"),
        efficient_eos=True,
        kind="reasoning",
    ),
    _t(
        "glm4v",
        prefix=("[gMASK]<sop>",),
        system=("<|system|>\n{{content}}",),
        user=("<|user|>\n{{content}}<|assistant|>",),
        assistant=("\n{{content}}",),
        observation=("<|observation|>\n{{content}}<|assistant|>",),
        function=("{{content}}",),
        stop_words=("<|user|>", "<|observation|>", "</answer>"),
        efficient_eos=True,
        kind="reasoning",
    ),
    _t(
        "glmz1",
        prefix=("[gMASK]<sop>",),
        system=("<|system|>\n{{content}}",),
        user=("<|user|>\n{{content}}<|assistant|>",),
        assistant=("\n{{content}}",),
        observation=("<|observation|>\n{{content}}<|assistant|>",),
        function=("{{content}}",),
        stop_words=("<|user|>", "<|observation|>"),
        efficient_eos=True,
        kind="reasoning",
    ),
    _t(
        "gpt_oss",
        system=("<|start|>system<|message|>{{content}}<|end|>",),
        user=("<|start|>user<|message|>{{content}}<|end|><|start|>assistant",),
        assistant=("{{content}}",),
        default_system="You are ChatGPT, a large language model trained by OpenAI.",
        thought_words=("<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>"),
        efficient_eos=True,
        kind="reasoning",
    ),
    _t(
        "granite3",
        system=("<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n",),
        user=((
            "<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>"
        ),),
        assistant=("{{content}}<|end_of_text|>\n",),
    ),
    _t(
        "granite4",
        system=("<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n",),
        user=((
            "<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n"
            "<|start_of_role|>assistant<|end_of_role|>"
        ),),
        assistant=("{{content}}<|end_of_text|>\n",),
        observation=("<|start_of_role|>tool<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant\n",),
        function=("{{content}}<|end_of_text|>\n",),
        default_system="You are Granite, developed by IBM. You are a helpful AI assistant.",
        stop_words=("<|end_of_text|>",),
    ),
    _t(
        "hunyuan",
        prefix=("<|startoftext|>",),
        system=("{{content}}<|extra_4|>",),
        user=("{{content}}<|extra_0|>",),
        assistant=("{{content}}<|eos|>",),
        stop_words=("<|eos|>",),
    ),
    _t(
        "intern2",
        prefix=(BOS,),
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        default_system=(
            "You are an AI assistant whose name is InternLM (书生·浦语).\n"
            "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI Laboratory"
            " (上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n"
            "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the user suc"
            "h as English and 中文."
        ),
        stop_words=("<|im_end|>",),
    ),
    _t(
        "intern_vl",
        prefix=(BOS,),
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        default_system="你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。",
        stop_words=("<|im_end|>",),
    ),
    _t(
        "keye_vl",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
        kind="reasoning",
    ),
    _t(
        "kimi_vl",
        system=("<|im_system|>system<|im_middle|>{{content}}<|im_end|>",),
        user=("<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>",),
        assistant=("{{content}}<|im_end|>",),
        default_system="You are a helpful assistant",
        stop_words=("<|im_end|>",),
        thought_words=("◁think▷", "◁/think▷"),
        kind="reasoning",
    ),
    _t(
        "lfm2",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=((
            "<|im_start|>tool\n<|tool_response_start|>{{content}}<|tool_response_end|><|im_end|>\n"
            "<|im_start|>assistant\n"
        ),),
        function=("{{content}}<|im_end|>\n",),
        default_system="You are a helpful AI assistant.",
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "llama2",
        system=("<<SYS>>\n{{content}}\n<</SYS>>\n\n",),
        user=(BOS, "[INST] {{content}} [/INST]"),
        kind="llama2",
    ),
    _t(
        "llama3",
        prefix=(BOS,),
        system=("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",),
        user=((
            "<|start_header_id|>user<|end_header_id|>\n"
            "\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
        ),),
        assistant=("{{content}}<|eot_id|>",),
        observation=((
            "<|start_header_id|>ipython<|end_header_id|>\n"
            "\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
        ),),
        function=("{{content}}<|eot_id|>",),
        stop_words=("<|eot_id|>", "<|eom_id|>"),
        replace_eos=True,
    ),
    _t(
        "llama4",
        prefix=(BOS,),
        system=("<|header_start|>system<|header_end|>\n\n{{content}}<|eot|>",),
        user=("<|header_start|>user<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n",),
        assistant=("{{content}}<|eot|>",),
        observation=((
            "<|header_start|>ipython<|header_end|>\n"
            "\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n"
            "\n"
        ),),
        function=("{{content}}<|eot|>",),
        stop_words=("<|eot|>", "<|eom|>"),
        replace_eos=True,
    ),
    _t(
        "mllama",
        prefix=(BOS,),
        system=("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",),
        user=((
            "<|start_header_id|>user<|end_header_id|>\n"
            "\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
        ),),
        assistant=("{{content}}<|eot_id|>",),
        observation=((
            "<|start_header_id|>ipython<|end_header_id|>\n"
            "\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
            "\n"
        ),),
        function=("{{content}}<|eot_id|>",),
        stop_words=("<|eot_id|>", "<|eom_id|>"),
        replace_eos=True,
    ),
    _t(
        "llava",
        user=("USER: {{content}} ASSISTANT:",),
        default_system=(
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
            "helpful, detailed, and polite answers to the user's questions."
        ),
    ),
    _t(
        "llava_next",
        user=("USER: {{content}} ASSISTANT:",),
        default_system=(
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
            "helpful, detailed, and polite answers to the user's questions."
        ),
    ),
    _t(
        "mimo",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        default_system="You are a helpful assistant.",
        stop_words=("<|im_end|>",),
        replace_eos=True,
        kind="reasoning",
    ),
    _t(
        "minicpm_v",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        default_system="You are a helpful assistant.",
        stop_words=("<|im_end|>",),
    ),
    _t(
        "mistral",
        prefix=(BOS,),
        system=("{{content}}\n\n",),
        user=("[INST] {{content}}[/INST]",),
        assistant=(" {{content}}", EOS),
        observation=('[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]',),
        function=("[TOOL_CALLS] {{content}}", EOS),
        kind="llama2",
    ),
    _t(
        "ministral3",
        prefix=(BOS,),
        system=("{{content}}\n\n",),
        user=("[INST]{{content}}[/INST]",),
        observation=('[TOOL_RESULTS]{"content": {{content}}}[/TOOL_RESULTS]',),
        function=("[TOOL_CALLS]{{content}}", EOS),
        kind="llama2",
    ),
    _t(
        "olmo",
        prefix=(EOS,),
        user=("<|user|>\n{{content}}<|assistant|>\n",),
    ),
    _t(
        "openchat",
        prefix=(BOS,),
        user=("GPT4 Correct User: {{content}}", EOS, "GPT4 Correct Assistant:"),
    ),
    _t(
        "paligemma",
        prefix=(BOS,),
        user=("{{content}}\n",),
        kind="llama2",
    ),
    _t(
        "phi",
        system=("<|system|>\n{{content}}<|end|>\n",),
        user=("<|user|>\n{{content}}<|end|>\n<|assistant|>\n",),
        assistant=("{{content}}<|end|>\n",),
        stop_words=("<|end|>",),
        replace_eos=True,
    ),
    _t(
        "phi4",
        system=("<|im_start|>system<|im_sep|>{{content}}<|im_end|>",),
        user=("<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>",),
        assistant=("{{content}}<|im_end|>",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "phi4_mini",
        system=("<|system|>{{content}}<|end|>",),
        user=("<|user|>{{content}}<|end|><|assistant|>",),
        assistant=("{{content}}<|end|>",),
        stop_words=("<|end|>",),
        replace_eos=True,
    ),
    _t(
        "pixtral",
        prefix=(BOS,),
        system=("{{content}}\n\n",),
        user=("[INST]{{content}}[/INST]",),
        observation=('[TOOL_RESULTS]{"content": {{content}}}[/TOOL_RESULTS]',),
        function=("[TOOL_CALLS]{{content}}", EOS),
        kind="llama2",
    ),
    _t(
        "qwen",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "qwen3",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
        kind="reasoning",
    ),
    _t(
        "qwen3_nothink",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "qwen2_audio",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        default_system="You are a helpful assistant.",
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "qwen2_omni",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        default_system="You are a helpful assistant.",
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "qwen2_vl",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        default_system="You are a helpful assistant.",
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "qwen3_vl",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
        kind="reasoning",
    ),
    _t(
        "qwen3_vl_nothink",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "qwen3_5",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
        kind="reasoning",
    ),
    _t(
        "qwen3_5_nothink",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
    ),
    _t(
        "qwen3_6",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        observation=_QWEN_TOOL_RESULT,
        function=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
        replace_eos=True,
        kind="reasoning",
    ),
    _t(
        "seed_oss",
        system=(BOS, "system\n{{content}}", EOS),
        user=(BOS, "user\n{{content}}", EOS, BOS, "assistant\n"),
        function=(BOS, "\n{{content}}", EOS),
        thought_words=("<seed:think>", "</seed:think>"),
        kind="reasoning",
    ),
    _t(
        "smollm",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
    ),
    _t(
        "smollm2",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face.",
        stop_words=("<|im_end|>",),
    ),
    _t(
        "starchat",
        system=("<|system|>\n{{content}}<|end|>\n",),
        user=("<|user|>\n{{content}}<|end|>\n<|assistant|>",),
        assistant=("{{content}}<|end|>\n",),
        stop_words=("<|end|>",),
    ),
    _t(
        "telechat2",
        system=("<_system>{{content}}",),
        user=("<_user>{{content}}<_bot>",),
        default_system="你是中国电信星辰语义大模型，英文名是TeleChat，你是由中电信人工智能科技有限公司和中国电信人工智能研究院（TeleAI）研发的人工智能助手。",
    ),
    _t(
        "vicuna",
        user=("USER: {{content}} ASSISTANT:",),
        default_system=(
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
            "helpful, detailed, and polite answers to the user's questions."
        ),
    ),
    _t(
        "yi",
        system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
        user=("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
        assistant=("{{content}}<|im_end|>\n",),
        stop_words=("<|im_end|>",),
    ),
    _t(
        "yuan",
        user=("{{content}}", token("<sep>")),
        assistant=("{{content}}<eod>\n",),
        stop_words=("<eod>",),
    ),
    _t(
        "zephyr",
        system=("<|system|>\n{{content}}", EOS),
        user=("<|user|>\n{{content}}", EOS, "<|assistant|>\n"),
        default_system="You are Zephyr, a helpful assistant.",
    ),
]

TEMPLATES: dict[str, ChatTemplate] = {t.name: t for t in _TABLE}


def get_template(
    name: str | None,
    chat_template: str | None = None,
    tokenizer: Any = None,
    bos_token: str | None = None,
    eos_token: str | None = None,
) -> ChatTemplate:
    """The template LLaMA-Factory would use for ``template: name`` (see the module docstring for the fallback)."""
    if name and name in TEMPLATES:
        return TEMPLATES[name]
    why = f"template `{name}` is not modelled by cfgtune" if name else "no `template` in the config"
    if chat_template and tokenizer is not None:
        try:
            parsed = parse_chat_template(chat_template, tokenizer, bos_token, eos_token)
        except Exception as exc:  # noqa: BLE001 - a template jinja2 cannot render: fall through to `empty`
            why += f"; the tokenizer's chat_template could not be parsed ({exc.__class__.__name__})"
        else:
            if name is None:  # LLaMA-Factory does exactly this without a `template` key
                return _with_note(parsed, "no `template`: parsed from the tokenizer's chat_template, like LLaMA-Factory")
            return _with_note(parsed, f"{why}: its markup was taken from the tokenizer's chat_template")
    base = TEMPLATES["empty"]
    if name is None:
        return _with_note(base, "no `template` and no chat_template in the tokenizer: `empty`, like LLaMA-Factory")
    return _with_note(base, f"{why}: lengths exclude its per-turn markup (typically 5-15 tokens a turn)")


def _with_note(t: ChatTemplate, note: str) -> ChatTemplate:
    from dataclasses import replace

    return replace(t, note=note)


def parse_chat_template(
    chat_template: str, tokenizer: Any, bos_token: str | None, eos_token: str | None
) -> ChatTemplate:
    """LLaMA-Factory's ``parse_template``: render the jinja chat template around placeholders to find the slots."""
    import jinja2  # optional: only for templates outside the table
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False)
    env.globals["raise_exception"] = raise_exception
    compiled = env.from_string(chat_template)

    def render(messages: list[dict[str, str]], gen: bool) -> str:
        return compiled.render(messages=messages, add_generation_prompt=gen, bos_token=bos_token or "",
                               eos_token=eos_token or "", tools=None)  # fmt: skip

    prefix = tokenizer.decode(tokenizer.encode("", add_special_tokens=True).ids, skip_special_tokens=False)
    c = "{{content}}"
    system_slot = render([{"role": "system", "content": c}], False)[len(prefix):]
    user_empty_system = render([{"role": "system", "content": ""}, {"role": "user", "content": c}], True)[len(prefix):]
    user_slot = render([{"role": "user", "content": c}], True)[len(prefix):]
    assistant_slot = render([{"role": "user", "content": c}, {"role": "assistant", "content": c}], False)
    assistant_slot = assistant_slot[len(prefix) + len(user_slot):]
    kind = "reasoning" if "<think>" in assistant_slot else "plain"
    assistant_slot = assistant_slot.replace("<think>", "").replace("</think>", "").lstrip("\n")
    default_system = ""
    if len(user_slot) > len(user_empty_system):
        default_system = _find_diff(user_empty_system, user_slot)
        sole_system = system_slot.replace(c, default_system, 1)
        user_slot = user_slot[len(sole_system):]
    return ChatTemplate(
        name="tokenizer-chat-template", user=(user_slot,), assistant=(assistant_slot,), system=(system_slot,),
        observation=(user_slot,), function=(assistant_slot,), prefix=(prefix,) if prefix else (),
        default_system=default_system, kind=kind,
    )  # fmt: skip


def _find_diff(short: str, long: str) -> str:
    i = j = 0
    diff = []
    while i < len(short) and j < len(long):
        if short[i] == long[j]:
            i += 1
        else:
            diff.append(long[j])
        j += 1
    return "".join(diff)
