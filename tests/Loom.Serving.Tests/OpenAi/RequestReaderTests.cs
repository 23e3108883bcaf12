using System.Text.Json;
using Loom.Data;
using Loom.Data.ImageText;
using Loom.Inference.Chat;
using Loom.Serving.OpenAi;

namespace Loom.Serving.Tests.OpenAi;

public class RequestReaderTests
{
    private static readonly ByteVocabulary Bytes = new();

    private static GenerationCall Completion(string json, int context = 64) =>
        CompletionRequestReader.Read(JsonDocument.Parse(json).RootElement, Bytes, context);

    private static GenerationCall Chat(string json, int context = 256) =>
        ChatRequestReader.Read(JsonDocument.Parse(json).RootElement, Bytes, context, ChatTemplate.Default);

    private static ApiException Refused(Func<GenerationCall> read) => Assert.Throws<ApiException>(() => read());

    [Fact]
    public void ChatRendersAJinjaTemplateAndRefusesWhatItRaisesWith400()
    {
        var template = new HuggingFaceChatTemplate(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be the user\\'s') }}{% endif %}"
            + "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}<eot>{% endfor %}<assistant>", "<s>", "</s>", "<eot>");
        var call = ChatRequestReader.Read(JsonDocument.Parse("""{"messages": [{"role": "user", "content": " hi "}]}""").RootElement, Bytes, 256, template);
        Assert.Equal(Bytes.Encode("<user>hi<eot><assistant>"), call.Request.Prompt);
        Assert.Equal(["<eot>"], call.Request.Sampling.Stop);
        var error = Refused(() => ChatRequestReader.Read(JsonDocument.Parse("""{"messages": [{"role": "assistant", "content": "x"}]}""").RootElement, Bytes, 256, template));
        Assert.Equal(400, error.Status);
        Assert.Equal("messages", error.Body.Error.Param);
        Assert.Equal("the chat template refused the conversation: first message must be the user's", error.Body.Error.Message);
    }

    [Fact]
    public void AnImagePartThenTheQuestionRendersAsTheCaptionTasksChatExampleSoATrainedModelAnswersThroughTheServer()
    {
        var vocabulary = new ExtraIdsVocabulary(Bytes, 1);
        var spec = new Loom.Models.ImageInputSpec(FashionMnistCaptions.ImageSize, FashionMnistCaptions.TokensPerImage, 258);
        string png = Convert.ToBase64String(Loom.Inference.GreyscaleImages.EncodePng(new float[28 * 28], 28));
        string json = $$$"""{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,{{{png}}}"}}, {"type": "text", "text": "{{{FashionMnistCaptions.ChatQuestion}}}"}]}]}""";
        var call = ChatRequestReader.Read(JsonDocument.Parse(json).RootElement, vocabulary, 256, ChatTemplate.Default, images: spec);
        var (expected, images) = ImagePrompts.Encode(vocabulary, FashionMnistCaptions.ChatPrompt, 258, FashionMnistCaptions.TokensPerImage);
        Assert.Equal(1, images);
        Assert.Equal(expected, call.Request.Prompt);
        Assert.Single(call.Request.Images);
    }

    [Fact]
    public void CompletionDefaultsAreOpenAis()
    {
        var call = Completion("""{"prompt": "abc"}""");
        Assert.Equal([97, 98, 99], call.Request.Prompt);
        var s = call.Request.Sampling;
        Assert.Equal(CompletionRequestReader.DefaultMaxTokens, s.MaxTokens);
        Assert.Equal(1.0, s.Temperature);
        Assert.Equal(1.0, s.TopP);
        Assert.Equal(0, s.TopK);
        Assert.True(s.StopAtEos);
        Assert.Empty(s.Stop);
        Assert.Null(s.LogProbs);
        Assert.Null(s.Seed);
        Assert.False(call.Stream);
        Assert.Equal(3, call.TextOffset);
    }

    [Fact]
    public void EverySamplingFieldIsRead()
    {
        var call = Completion("""
            {"prompt": ["hi"], "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "seed": 12, "presence_penalty": 0.5,
             "frequency_penalty": -1, "stop": "\n", "logprobs": 3, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true},
             "n": 1, "best_of": 1, "logit_bias": {}, "echo": false, "user": "someone"}
            """);
        var s = call.Request.Sampling;
        Assert.Equal((7, 0.5, 0.9, 40, 12L, 0.5, -1.0, 3), (s.MaxTokens, s.Temperature, s.TopP, s.TopK, s.Seed!.Value, s.PresencePenalty, s.FrequencyPenalty, s.LogProbs!.Value));
        Assert.Equal(["\n"], s.Stop);
        Assert.False(s.StopAtEos);
        Assert.True(call.Stream);
        Assert.True(call.IncludeUsage);
        Assert.Equal(0, Completion("""{"prompt": "x", "top_k": -1}""").Request.Sampling.TopK); // vLLM's "off"
    }

    [Fact]
    public void TokenIdPromptsAreTakenAsTheyAre()
    {
        Assert.Equal([1, 256, 3], Completion("""{"prompt": [1, 256, 3]}""").Request.Prompt);
        Assert.Equal([5, 6], Completion("""{"prompt": [[5, 6]]}""").Request.Prompt);
        Assert.Equal("prompt", Refused(() => Completion("""{"prompt": [1, 258]}""")).Body.Error.Param);
        Assert.Equal("prompt", Refused(() => Completion("""{"prompt": [[1], [2]]}""")).Body.Error.Param);
        Assert.Equal("prompt", Refused(() => Completion("""{"prompt": ""}""")).Body.Error.Param);
        Assert.Equal("prompt", Refused(() => Completion("""{"prompt": 5}""")).Body.Error.Param);
    }

    [Theory]
    [InlineData("""{"prompt": "x", "max_tokens": 0}""", "max_tokens")]
    [InlineData("""{"prompt": "x", "max_tokens": 1.5}""", "max_tokens")]
    [InlineData("""{"prompt": "x", "temperature": -0.1}""", "temperature")]
    [InlineData("""{"prompt": "x", "temperature": "hot"}""", "temperature")]
    [InlineData("""{"prompt": "x", "top_k": -2}""", "top_k")]
    [InlineData("""{"prompt": "x", "frequency_penalty": -2.5}""", "frequency_penalty")]
    [InlineData("""{"prompt": "x", "stop": [""]}""", "stop")]
    [InlineData("""{"prompt": "x", "stop": [1]}""", "stop")]
    [InlineData("""{"prompt": "x", "best_of": 3}""", "best_of")]
    [InlineData("""{"prompt": "x", "logit_bias": {"5": 10}}""", "logit_bias")]
    [InlineData("""{"prompt": "x", "echo": true}""", "echo")]
    [InlineData("""{"prompt": "x", "suffix": "y"}""", "suffix")]
    [InlineData("""{"prompt": "x", "stream": "yes"}""", "stream")]
    [InlineData("""{"prompt": "x", "stream_options": {"include_usage": 1}}""", "stream_options.include_usage")]
    public void BadCompletionFieldsAreRefusedByName(string json, string param)
    {
        var error = Refused(() => Completion(json));
        Assert.Equal(400, error.Status);
        Assert.Equal(param, error.Body.Error.Param);
        Assert.Contains(param.Split('.')[^1], error.Message);
    }

    [Fact]
    public void APromptMustLeaveRoomForOneToken()
    {
        Assert.Equal(63, Completion($$"""{"prompt": "{{new string('a', 63)}}"}""").Request.Prompt.Count);
        var error = Refused(() => Completion($$"""{"prompt": "{{new string('a', 64)}}"}"""));
        Assert.Equal("context_length_exceeded", error.Body.Error.Code);
        Assert.Contains("64", error.Message);
    }

    [Fact]
    public void ChatRendersTheTemplateAndStopsAtTheEndOfTurn()
    {
        var call = Chat("""
            {"messages": [{"role": "developer", "content": "Be brief."},
                          {"role": "user", "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "there"}]},
                          {"role": "assistant", "content": null}],
             "stop": ["\n\n"], "max_completion_tokens": 5, "max_tokens": 9, "logprobs": true, "top_logprobs": 2}
            """);
        string expected = ChatTemplate.Default.Render([new("system", "Be brief."), new("user", "Hello, there"), new("assistant", "")]);
        Assert.Equal(Bytes.Encode(expected), call.Request.Prompt);
        Assert.Equal(["\n\n", ChatTemplate.Default.EndOfTurn], call.Request.Sampling.Stop);
        Assert.Equal(5, call.Request.Sampling.MaxTokens); // max_completion_tokens wins over the older max_tokens
        Assert.Equal(2, call.Request.Sampling.LogProbs);
        Assert.Equal(9, Chat("""{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 9}""").Request.Sampling.MaxTokens);
        Assert.Equal(256, Chat("""{"messages": [{"role": "user", "content": "hi"}]}""").Request.Sampling.MaxTokens); // the engine clips it to the context
        Assert.Equal(0, Chat("""{"messages": [{"role": "user", "content": "hi"}], "logprobs": true}""").Request.Sampling.LogProbs);
        Assert.Null(Chat("""{"messages": [{"role": "user", "content": "hi"}], "logprobs": false}""").Request.Sampling.LogProbs);
    }

    [Theory]
    [InlineData("""{"messages": "hi"}""", "messages")]
    [InlineData("""{"messages": [{"content": "hi"}]}""", "messages[0].role")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]}""", "messages[1].tool_call_id")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}, {"role": "narrator", "content": "x"}]}""", "messages[1].role")]
    [InlineData("""{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}""", "messages[0].content[0].type")]
    [InlineData("""{"messages": [{"role": "user", "content": 3}]}""", "messages[0].content")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d"]}""", "stop")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}""", "tools[0].function")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}""", "response_format")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "n": 3}""", "n")]
    public void BadChatRequestsAreRefusedByName(string json, string param)
    {
        var error = Refused(() => Chat(json));
        Assert.Equal(400, error.Status);
        Assert.Equal(param, error.Body.Error.Param);
    }
}
