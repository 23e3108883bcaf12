using Loom.Inference.Chat.Jinja;

namespace Loom.Inference.Tests.Chat;

public class JinjaTemplateTests
{
    private static readonly IReadOnlyDictionary<string, object?> Messages = new Dictionary<string, object?>
    {
        ["messages"] = new List<object?>
        {
            new Dictionary<string, object?> { ["role"] = "system", ["content"] = "Be brief." },
            new Dictionary<string, object?> { ["role"] = "user", ["content"] = "Hi" },
            new Dictionary<string, object?> { ["role"] = "assistant", ["content"] = "Hello" },
        },
        ["bos_token"] = "<s>",
        ["add_generation_prompt"] = true,
    };

    private static string Render(string source, IReadOnlyDictionary<string, object?>? variables = null) =>
        new JinjaTemplate(source).Render(variables ?? Messages);

    [Theory]
    [InlineData("a{{ 'b' }}c", "abc")]
    [InlineData("{{ 1 + 2 * 3 }}", "7")]
    [InlineData("{{ 7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ -7 // 2 }} {{ 2 ** 3 }}", "3 1 3.5 -4 8")]
    [InlineData("{{ 'a' + 'b' ~ 1 }}", "ab1")]
    [InlineData("{{ \"it's\" }} {{ 'say \\'hi\\'\\n' }}", "it's say 'hi'\n")]
    [InlineData("{{ none }} {{ true }} {{ [1, 'a'] }} {{ undefined_name }}|", "None True [1, 'a'] |")]
    [InlineData("{{ 1 == 1.0 and 'a' != 'b' and 2 < 3 and not 3 <= 2 }}", "True")]
    [InlineData("{{ 'x' or 'y' }} {{ '' or 'y' }} {{ 0 and 1 }}", "x y 0")]
    [InlineData("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }}", "True True True True")]
    [InlineData("{{ 'yes' if 1 > 2 else 'no' }}", "no")]
    [InlineData("{{ 2.0 }} {{ 0.00001 }} {{ [1.5] | tojson }}", "2.0 1e-05 [1.5]")]
    public void EvaluatesExpressions(string source, string expected) => Assert.Equal(expected, Render(source));

    [Theory]
    [InlineData("{{ messages[0]['role'] }} {{ messages[1].content }} {{ messages[-1].role }}", "system Hi assistant")]
    [InlineData("{% for m in messages[1:] %}{{ m.role }},{% endfor %}", "user,assistant,")]
    [InlineData("{{ messages[:1] | length }} {{ messages[::-1][0].role }} {{ 'hello'[1:3] }}", "1 assistant el")]
    [InlineData("{{ messages[5] is defined }} {{ messages[0].name is defined }} {{ nothing is undefined }}", "False False True")]
    [InlineData("{{ none is none }} {{ 'a' is string }} {{ 1 is string }} {{ messages is iterable }} {{ messages[0] is mapping }} {{ 2 is not odd }}", "True True False True True True")]
    public void ReadsItemsAttributesAndSlices(string source, string expected) => Assert.Equal(expected, Render(source));

    [Theory]
    [InlineData("{{ '  x  ' | trim }}|{{ 'Ab' | upper }}{{ 'Ab' | lower }}|{{ messages | length }}", "x|ABab|3")]
    [InlineData("{{ x | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }}", "d  d")]
    [InlineData("{{ ['a', 'b'] | join(', ') }} {{ messages | map(attribute='role') | join('/') }}", "a, b system/user/assistant")]
    [InlineData("{{ {'a': [1, 'é\"'], 'b': none, 'c': true} | tojson }}", "{\"a\": [1, \"é\\\"\"], \"b\": null, \"c\": true}")]
    [InlineData("{{ {'a': 1} | tojson(indent=2) }}", "{\n  \"a\": 1\n}")]
    [InlineData("{{ ' a b '.strip().split(' ') | last }} {{ 'abc'.startswith('ab') }} {{ 'x' | string }} {{ '3' | int + 1 }}", "b True x 4")]
    [InlineData("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;")]
    [InlineData("{{ messages | selectattr('role', 'equalto', 'user') | list | length }}", "1")]
    public void AppliesFiltersAndMethods(string source, string expected) => Assert.Equal(expected, Render(source));

    [Fact]
    public void NamesAnUnknownFilter()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Render("{{ messages | shuffle }}"));
        Assert.Equal("chat template line 1: unknown filter 'shuffle'", e.Message);
    }

    [Fact]
    public void BranchesWithIfElifElse()
    {
        const string source = "{% for m in messages %}{% if m.role == 'system' %}S{% elif m.role == 'user' %}U{% else %}A{% endif %}{% endfor %}";
        Assert.Equal("SUA", Render(source));
        Assert.Equal("no", Render("{% if false %}yes{% else %}no{% endif %}"));
    }

    [Fact]
    public void LoopsExposeTheLoopVariable()
    {
        const string source = "{% for m in messages %}{{ loop.index0 }}{{ loop.index }}{{ loop.length }}{{ loop.first }}{{ loop.last }};{% endfor %}";
        Assert.Equal("013TrueFalse;123FalseFalse;233FalseTrue;", Render(source));
        Assert.Equal("empty", Render("{% for x in [] %}x{% else %}empty{% endfor %}"));
        Assert.Equal("1 3 ", Render("{% for x in range(5) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 3 %}{% break %}{% endif %}{% if x is odd %}{{ x }} {% endif %}{% endfor %}"));
        Assert.Equal("ua", Render("{% for m in messages if m.role != 'system' %}{{ m.role[0] }}{% endfor %}"));
    }

    [Fact]
    public void SetsVariablesAndNamespaces()
    {
        Assert.Equal("b", Render("{% set x = 'a' %}{% set x = 'b' %}{{ x }}"));
        // A plain set inside a loop does not leak out of it; a namespace's attribute does.
        const string source = "{% set found = false %}{% set ns = namespace(found=false, n=0) %}"
            + "{% for m in messages %}{% set found = true %}{% if m.role == 'user' %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}"
            + "{{ found }} {{ ns.found }} {{ ns.n }}";
        Assert.Equal("False True 3", Render(source));
        Assert.Equal("[x]", Render("{% set block %}[{{ 'x' }}]{% endset %}{{ block }}"));
        Assert.Equal("<b>hi</b>", Render("{% macro bold(t, tag='b') %}<{{ tag }}>{{ t }}</{{ tag }}>{% endmacro %}{{ bold('hi') }}"));
    }

    [Fact]
    public void ControlsWhitespace()
    {
        Assert.Equal("a|b", Render("a  {{- '|' -}}\n  b"));
        Assert.Equal("ab", Render("a\n{%- if true -%}\n  b\n{%- endif %}"));
        // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before one.
        Assert.Equal("x\ny\n", Render("{% if true %}\n    {% if true %}\nx\n    {% endif %}\ny\n{% endif %}\n"));
        Assert.Equal("  x\n", Render("{# note #}\n  {{ 'x' }}\n"));
        Assert.Equal("a  b", Render("a  {% if true %}b{% endif %}"));
        Assert.Equal("{{ raw }}", Render("{% raw %}{{ raw }}{% endraw %}"));
    }

    [Fact]
    public void RaiseExceptionIsAnArgumentException()
    {
        var e = Assert.Throws<ArgumentException>(() => Render("{% if messages | length > 1 %}{{ raise_exception('Only one message, please') }}{% endif %}"));
        Assert.Equal("Only one message, please", e.Message);
    }

    [Fact]
    public void StrftimeNowFormatsTheGivenTime()
    {
        var template = new JinjaTemplate("{{ strftime_now('%d %b %Y') }}");
        Assert.Equal("05 Mar 2025", template.Render(new Dictionary<string, object?>(), new DateTime(2025, 3, 5)));
    }

    [Theory]
    [InlineData("{% if x %}", "endif")]
    [InlineData("{{ 'open", "not closed")]
    [InlineData("{% include 'x' %}", "include")]
    [InlineData("{{ 1 + }}", "expected a value")]
    public void RefusesBadTemplatesInOneLine(string source, string named)
    {
        var e = Assert.Throws<FormatException>(() => new JinjaTemplate(source));
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }
}
