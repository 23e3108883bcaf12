using System.ClientModel;
using System.Text;
using Loom.Data;
using Loom.Data.ImageText;
using Loom.Inference;
using Loom.Inference.Chat;
using Loom.Inference.Engine;
using Loom.Models;
using OpenAI;
using OpenAI.Chat;
using static TorchSharp.torch;

namespace Loom.Serving.Tests;

/// <summary>Images in chat content parts (<c>image_url</c> with data: URLs), sent by the official OpenAI client to a vision_language model.</summary>
public sealed class ImageChatTests : IAsyncLifetime
{
    private const string ModelName = "vlm-test";
    private static readonly ExtraIdsVocabulary Vocabulary = new(new ByteVocabulary(), 1);
    private LanguageModel model = null!;
    private ContinuousBatchingEngine engine = null!;
    private LoomServer server = null!;

    public async Task InitializeAsync()
    {
        using var generator = new Generator(29);
        model = TinyModels.VisionLanguage().Build(generator: generator);
        engine = new ContinuousBatchingEngine(model, Vocabulary, ModelName, new EngineOptions { BlockSize = 8, MaxRunning = 4 });
        server = await LoomServer.StartAsync(engine, new ServerOptions { Port = 0 });
    }

    public async Task DisposeAsync()
    {
        await server.DisposeAsync();
        engine.Dispose();
        model.Dispose();
    }

    private ChatClient Client() =>
        new(ModelName, new ApiKeyCredential("no-key-needed"), new OpenAIClientOptions { Endpoint = server.ApiBase, NetworkTimeout = TimeSpan.FromMinutes(2) });

    private static readonly float[] Pixels = [.. Enumerable.Range(0, 64).Select(i => (i * 37 % 64) / 63f)];

    [Fact]
    public async Task A_png_sent_as_a_data_url_gets_the_models_answer_for_that_image()
    {
        byte[] png = GreyscaleImages.EncodePng(Pixels, 8);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 6 };
        ChatCompletion reply = await Client().CompleteChatAsync([new UserChatMessage(
            ChatMessageContentPart.CreateTextPart("Look: "),
            ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(png), "image/png"),
            ChatMessageContentPart.CreateTextPart(" what is it?"))], options);

        // What generation gives for the same conversation and image, straight from the engine.
        var template = ChatTemplate.Default;
        string rendered = template.Render([new ChatTurn("user", "Look: " + ImagePrompts.Marker + " what is it?")]);
        var (prompt, images) = ImagePrompts.Encode(Vocabulary, rendered, 258, 4);
        Assert.Equal(1, images);
        var sampling = new SamplingOptions { Temperature = 0, MaxTokens = 6, Stop = [template.EndOfTurn] };
        var expected = new StringBuilder();
        await foreach (var update in engine.GenerateAsync(new GenerationRequest(prompt, sampling) { Images = [GreyscaleImages.Decode(png, 8)] }))
            expected.Append(update.Text);
        Assert.Equal(expected.ToString(), reply.Content[0].Text);
        Assert.Equal(prompt.Length, reply.Usage.InputTokenCount);

    }

    public static TheoryData<string, string> BadImages => new()
    {
        { "corrupt", "malformed image" },
        { "gif", "unsupported image format 'image/gif'" },
        { "gif-as-png", "unsupported image format GIF" },
        { "remote", "only base64 data: URLs" },
    };

    [Theory]
    [MemberData(nameof(BadImages))]
    public async Task A_bad_image_gets_a_400_that_says_why(string which, string message)
    {
        byte[] gif = Convert.FromBase64String("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7");
        var part = which switch
        {
            "corrupt" => ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes([0x89, (byte)'P', (byte)'N', (byte)'G', 1, 2, 3, 4, 5]), "image/png"),
            "gif" => ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(gif), "image/gif"),
            "gif-as-png" => ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(gif), "image/png"),
            _ => ChatMessageContentPart.CreateImagePart(new Uri("https://example.com/shirt.png")),
        };
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Client().CompleteChatAsync([new UserChatMessage(part)]));
        Assert.Equal(400, e.Status);
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public async Task Malformed_base64_gets_a_400_that_says_why()
    {
        using var http = new HttpClient { BaseAddress = server.Address };
        string body = """{"model":"vlm-test","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,@@not base64@@"}}]}]}""";
        using var response = await http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("not valid base64", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task An_image_sent_to_a_text_only_model_gets_a_400_that_says_why()
    {
        await using var harness = await ServerHarness.StartAsync(batching: true);
        byte[] png = GreyscaleImages.EncodePng(Pixels, 8);
        var e = await Assert.ThrowsAsync<ClientResultException>(() => harness.Chat().CompleteChatAsync([new UserChatMessage(
            ChatMessageContentPart.CreateTextPart("what is it?"), ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(png), "image/png"))]));
        Assert.Equal(400, e.Status);
        Assert.Contains("reads text only", e.Message);
    }
}
