using Loom.Data;
using Loom.Inference.Chat;
using Loom.Inference.Engine;
using Loom.Models;
using Microsoft.Extensions.AI;
using static TorchSharp.torch;

namespace Loom.Inference.Tests.Chat;

public class LoomChatClientTests
{
    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "Be brief."),
        new(ChatRole.User, "Name a color."),
    ];

    // Untied embeddings: a random model with tied ones greedily repeats the prompt's last token, which
    // would make greedy text and stop sequences trivial.
    private static DecoderLm TinyModel(IVocabulary vocabulary)
    {
        using var generator = new Generator(7);
        return new DecoderLm(new DecoderLmOptions
        {
            VocabSize = vocabulary.Size, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 8, MlpDim = 64,
            MaxSequenceLength = 128, SharedEmbeddings = false,
        }, generator: generator);
    }

    private static async Task<(string Text, GenerationUpdate Last)> EngineText(IGenerationEngine engine, string prompt, SamplingOptions sampling)
    {
        string text = "";
        GenerationUpdate? last = null;
        await foreach (var update in engine.GenerateAsync(new GenerationRequest(engine.Vocabulary.Encode(prompt), sampling)))
        {
            text += update.Text;
            last = update;
        }
        return (text, last!);
    }

    [Fact]
    public async Task TheBatchingEngineAnswersConcurrentChatsAsTheSequentialOneDoes()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var sequential = new SequentialEngine(model, vocabulary, "tiny");
        using var batching = new ContinuousBatchingEngine(model, vocabulary, "tiny", new EngineOptions { BlockSize = 8, MaxRunning = 4 });
        var questions = new[] { "Name a color.", "Name a fruit.", "Count to three.", "Say hi.", "Name a bird.", "Name a tree." };
        ChatMessage[] Chat(string q) => [new(ChatRole.System, "Be brief."), new(ChatRole.User, q)];
        var options = new ChatOptions { Temperature = 0.9f, TopP = 0.95f, Seed = 3, MaxOutputTokens = 16 };
        var viaBatching = await Task.WhenAll(questions.Select(q => new LoomChatClient(batching).GetResponseAsync(Chat(q), options)));
        for (int i = 0; i < questions.Length; i++)
        {
            var alone = await new LoomChatClient(sequential).GetResponseAsync(Chat(questions[i]), options);
            Assert.Equal(alone.Text, viaBatching[i].Text);
            Assert.Equal(alone.Usage!.OutputTokenCount, viaBatching[i].Usage!.OutputTokenCount);
        }
    }

    [Fact]
    public async Task StreamingAndNonStreamingGiveWhatTheEngineGivesForTheRenderedPrompt()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);
        var options = new ChatOptions { Temperature = 1, Seed = 7, MaxOutputTokens = 24 };

        var response = await client.GetResponseAsync(Conversation, options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Conversation, options)) updates.Add(update);
        var (expected, last) = await EngineText(engine, client.RenderPrompt(Conversation, options), client.CreateSamplingOptions(options));

        Assert.NotEmpty(expected);
        Assert.Equal(expected, response.Text);
        Assert.Equal(expected, string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
        Assert.All(updates.SkipLast(1), u => Assert.Null(u.FinishReason));
        var streamed = updates.ToChatResponse();
        Assert.Equal(response.FinishReason, streamed.FinishReason);
        Assert.Single(streamed.Messages);
        Assert.Equal(expected, streamed.Text);
        foreach (var usage in new[] { response.Usage!, streamed.Usage! })
        {
            Assert.Equal(last.PromptTokens, usage.InputTokenCount);
            Assert.Equal(last.CompletionTokens, usage.OutputTokenCount);
            Assert.Equal(last.PromptTokens + last.CompletionTokens, usage.TotalTokenCount);
        }
        Assert.Equal("tiny", response.ModelId);
        Assert.Equal(ChatRole.Assistant, response.Messages[0].Role);
    }

    [Fact]
    public async Task MaxOutputTokensFinishesWithLengthAndUsageCountsTheTokens()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 10 };

        var response = await client.GetResponseAsync(Conversation, options);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Conversation, options)) updates.Add(update);

        int promptTokens = vocabulary.Encode(client.RenderPrompt(Conversation)).Length;
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(ChatFinishReason.Length, updates[^1].FinishReason);
        Assert.Equal(promptTokens, response.Usage!.InputTokenCount);
        Assert.Equal(10, response.Usage.OutputTokenCount);
        Assert.Equal(promptTokens + 10, response.Usage.TotalTokenCount);
        // Every piece is one character, so the reply has one character per token.
        Assert.Equal(10, response.Text.Length);
        Assert.Equal(response.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates, u => Assert.IsType<GenerationUpdate>(u.RawRepresentation));
        var usage = Assert.Single(updates[^1].Contents.OfType<UsageContent>()).Details;
        Assert.Equal(10, usage.OutputTokenCount);
        Assert.Equal(promptTokens, usage.InputTokenCount);
    }

    [Fact]
    public async Task AStopSequenceCutsTheTextAndFinishesWithStop()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);
        var greedy = await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 30 });
        Assert.Equal(ChatFinishReason.Length, greedy.FinishReason);
        string stop = greedy.Text.Substring(16, 3); // something the model writes; it may first appear earlier
        int at = greedy.Text.IndexOf(stop, StringComparison.Ordinal);
        Assert.InRange(at, 1, 16); // the reply is cut inside, not trivially empty

        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 30, StopSequences = [stop] };
        var response = await client.GetResponseAsync(Conversation, options);
        var streamed = new List<ChatResponseUpdate>();
        await foreach (var update in client.GetStreamingResponseAsync(Conversation, options)) streamed.Add(update);

        Assert.Equal(greedy.Text[..at], response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(at + stop.Length, response.Usage!.OutputTokenCount); // the tokens up to the one that completed the stop
        Assert.Equal(greedy.Text[..at], string.Concat(streamed.Select(u => u.Text)));
        Assert.Equal(ChatFinishReason.Stop, streamed[^1].FinishReason);
    }

    [Fact]
    public async Task TheSameSeedGivesTheSameTextAndOtherSeedsOtherText()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine, defaultOptions: new ChatOptions { Temperature = 1, MaxOutputTokens = 20 });

        string a = (await client.GetResponseAsync(Conversation, new ChatOptions { Seed = 1 })).Text;
        string b = (await client.GetResponseAsync(Conversation, new ChatOptions { Seed = 1 })).Text;
        var others = new List<string>();
        for (long seed = 2; seed <= 4; seed++) others.Add((await client.GetResponseAsync(Conversation, new ChatOptions { Seed = seed })).Text);

        Assert.Equal(a, b);
        Assert.All(others, other => Assert.NotEqual(a, other));
    }

    [Fact]
    public async Task TemperatureZeroIsTheTextGeneratorsGreedyContinuation()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);

        var response = await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 20 });
        var prompt = vocabulary.Encode(client.RenderPrompt(Conversation));
        var tokens = new TextGenerator(model, vocabulary.EosId).Generate(prompt, new SamplingOptions { Temperature = 0, MaxTokens = 20 }).ToArray();
        string greedy = vocabulary.Decode(tokens);
        int end = greedy.IndexOf(client.Template.EndOfTurn, StringComparison.Ordinal);

        Assert.Equal(end < 0 ? greedy : greedy[..end], response.Text);
        Assert.NotEmpty(response.Text);
    }

    [Fact]
    public async Task CancellingMidStreamThrowsAfterTheTextSoFarAndFreesTheEngine()
    {
        // The worker passes the detokenizer's first decode (the prompt) and two tokens, then waits.
        using var vocabulary = new GatedVocabulary(PieceVocabulary.Printable(), passingDecodes: 3);
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);
        using var cancellation = new CancellationTokenSource();
        var received = new List<ChatResponseUpdate>();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in client.GetStreamingResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 50 }, cancellation.Token))
            {
                received.Add(update);
                if (received.Count == 1)
                {
                    vocabulary.WaitUntilBlocked(); // the worker is decoding the third token
                    await cancellation.CancelAsync();
                    vocabulary.Open();
                }
            }
        });

        Assert.InRange(received.Count, 1, 3); // tokens 1 and 2, and the third the worker was decoding
        Assert.All(received, u => Assert.Null(u.FinishReason));
        Assert.Equal(0, engine.Stats.Running);
        Assert.Equal(0, engine.Stats.Waiting);
        Assert.Equal(3, engine.Stats.GeneratedTokensTotal);
        // The engine serves the next request.
        var next = await client.GetResponseAsync(Conversation, new ChatOptions { Temperature = 0, MaxOutputTokens = 4 });
        Assert.Equal(ChatFinishReason.Length, next.FinishReason);
    }

    [Fact]
    public async Task ACancelledTokenFailsTheNonStreamingCall()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);
        using var cancellation = new CancellationTokenSource();
        await cancellation.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetResponseAsync(Conversation, null, cancellation.Token));
        Assert.Equal(0, engine.Stats.Running);
        Assert.Equal(0, engine.Stats.Waiting);
    }

    [Fact]
    public void ChatOptionsMapToSamplingOptionsOverTheClientsDefaults()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine, defaultOptions: new ChatOptions { Temperature = 0.5f, TopK = 7, StopSequences = ["##"] });

        var sampling = client.CreateSamplingOptions(new ChatOptions
        {
            TopP = 0.75f, MaxOutputTokens = 9, Seed = 42, PresencePenalty = 0.5f, FrequencyPenalty = -1f, ModelId = "tiny",
        });
        Assert.Equal(0.5, sampling.Temperature);
        Assert.Equal(0.75, sampling.TopP);
        Assert.Equal(7, sampling.TopK);
        Assert.Equal(9, sampling.MaxTokens);
        Assert.Equal(42, sampling.Seed);
        Assert.Equal(0.5, sampling.PresencePenalty);
        Assert.Equal(-1, sampling.FrequencyPenalty);
        Assert.True(sampling.StopAtEos);
        Assert.Equal(["##", "<|end|>"], sampling.Stop);

        var own = client.CreateSamplingOptions(new ChatOptions { Temperature = 0, StopSequences = ["a", "<|end|>", "a"] });
        Assert.Equal(0, own.Temperature);
        Assert.Equal(["a", "<|end|>"], own.Stop); // the request's stops replace the defaults'; duplicates and the end of turn appear once
        Assert.Null(client.CreateSamplingOptions(null).Seed);
        Assert.Equal(new SamplingOptions().MaxTokens, client.CreateSamplingOptions(null).MaxTokens);
    }

    [Fact]
    public void InvalidRequestsAreRefusedBeforeGenerating()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);

        var tool = Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync([new ChatMessage(ChatRole.Tool, "42")]));
        Assert.Contains("tool", tool.Message);
        Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync(
            [new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1 }, "image/png")])]));
        Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync(Conversation,
            new ChatOptions { Tools = [new HostedWebSearchTool()] }));
        using var unsupported = System.Text.Json.JsonDocument.Parse("{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\",\"minimum\":0}}}");
        var schema = Assert.Throws<ArgumentException>(() => client.GetStreamingResponseAsync(Conversation,
            new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(unsupported.RootElement, "person") }));
        Assert.Contains("minimum", schema.Message);
        Assert.Throws<NotSupportedException>(() => client.GetStreamingResponseAsync(Conversation,
            new ChatOptions { ResponseFormat = ChatResponseFormat.Json, Reasoning = new ReasoningOptions { Effort = ReasoningEffort.Low } }));
        var role = Assert.Throws<ArgumentException>(() => client.GetStreamingResponseAsync([new ChatMessage(new ChatRole("narrator"), "Once")]));
        Assert.Contains("narrator", role.Message);
        var modelId = Assert.Throws<ArgumentException>(() => client.GetStreamingResponseAsync(Conversation, new ChatOptions { ModelId = "other" }));
        Assert.Contains("tiny", modelId.Message);
        Assert.Throws<ArgumentException>(() => client.GetStreamingResponseAsync(Conversation, new ChatOptions { StopSequences = ["a", "b", "c", "d"] }));
        Assert.Throws<ArgumentException>(() => client.GetStreamingResponseAsync(Conversation, new ChatOptions { Temperature = -1 }));
        Assert.Throws<ArgumentException>(() => client.GetStreamingResponseAsync([]));
        Assert.Throws<ArgumentException>(() => new LoomChatClient(engine, defaultOptions: new ChatOptions { TopP = 0 }));
        Assert.Equal(0, engine.Stats.PromptTokensTotal);
    }

    [Fact]
    public async Task APromptLongerThanTheContextIsRefused()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);
        var e = await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, new string('x', 200))]));
        Assert.Contains("context", e.Message);
    }

    [Fact]
    public void InstructionsBecomeALeadingSystemTurnAndTextContentsAreJoined()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine, ChatTemplate.ChatMl);
        ChatMessage[] messages =
        [
            new(ChatRole.User, [new TextContent("Hi "), new TextContent("there")]),
            new(ChatRole.Assistant, "Hello"),
            new(ChatRole.User, "Bye"),
        ];

        Assert.Equal(
            "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n" +
            "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
            client.RenderPrompt(messages, new ChatOptions { Instructions = "Be kind." }));
        Assert.Equal(["<|im_end|>"], client.CreateSamplingOptions(null).Stop);
    }

    [SkippableFact]
    public void AHuggingFaceVocabularyBringsItsJinjaChatTemplate()
    {
        var vocabulary = new HuggingFaceVocabulary(Loom.Data.Tests.NpmTokenizerFiles.Folder(Loom.Data.Tests.NpmTokenizerFiles.Llama3Package));
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        var client = new LoomChatClient(engine);
        Assert.IsType<HuggingFaceChatTemplate>(client.Template);
        // Llama 3's template, as Python's jinja2 renders it (see HuggingFaceChatTemplateTests).
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n",
            client.RenderPrompt(Conversation));
        Assert.Equal(["<|eot_id|>"], client.CreateSamplingOptions(null).Stop);
        Assert.Same(ChatTemplate.ChatMl, new LoomChatClient(engine, ChatTemplate.ChatMl).Template); // a template given explicitly wins
    }

    [Fact]
    public void GetServiceReturnsTheMetadataAndTheClient()
    {
        var vocabulary = PieceVocabulary.Printable();
        using var model = TinyModel(vocabulary);
        using var engine = new SequentialEngine(model, vocabulary, "tiny");
        IChatClient client = new LoomChatClient(engine);

        var metadata = client.GetService<ChatClientMetadata>();
        Assert.NotNull(metadata);
        Assert.Equal("loom", metadata.ProviderName);
        Assert.Equal("tiny", metadata.DefaultModelId);
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.Same(client, client.GetService<LoomChatClient>());
        Assert.Same(engine, client.GetService<IGenerationEngine>());
        Assert.Null(client.GetService<string>());
        Assert.Null(client.GetService<ChatClientMetadata>("some key"));
    }
}
