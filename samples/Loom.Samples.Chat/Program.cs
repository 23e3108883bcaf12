// Chats with a Loom checkpoint through Microsoft.Extensions.AI's IChatClient.
//
//   dotnet run -- <checkpoint or run folder> [options] [prompt]
//
// With a prompt: streams one reply and exits. Without one: reads a message per line from stdin and
// streams each reply, keeping the conversation (an empty line or end of input ends it).
// Options: --max-tokens N (default 200), --temperature T (default 0.8; 0 = greedy), --seed S,
//          --device cpu|cuda|auto (default cpu), --template loom|chatml (default loom).
using Loom.Core;
using Loom.Inference;
using Loom.Inference.Chat;
using Loom.Inference.Engine;
using Loom.Models;
using Loom.Training;
using Microsoft.Extensions.AI;

string? checkpoint = null;
var promptWords = new List<string>();
int maxTokens = 200;
float temperature = 0.8f;
long? seed = null;
string device = "cpu";
string template = "loom";
for (int i = 0; i < args.Length; i++)
{
    string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--max-tokens": maxTokens = int.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--temperature": temperature = float.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--seed": seed = long.Parse(Value(), System.Globalization.CultureInfo.InvariantCulture); break;
        case "--device": device = Value(); break;
        case "--template": template = Value(); break;
        default:
            if (checkpoint is null) checkpoint = args[i];
            else promptWords.Add(args[i]);
            break;
    }
}
if (checkpoint is null)
{
    Console.Error.WriteLine("usage: Loom.Samples.Chat <checkpoint or run folder> [--max-tokens N] [--temperature T] [--seed S] [--device D] [--template loom|chatml] [prompt]");
    return 2;
}

// A checkpoint folder, or a run folder whose newest checkpoint is taken.
string folder = TrainingCheckpoint.Resolve(checkpoint);

var (model, manifest) = ModelCheckpoint.Load(folder, Devices.Resolve(device));
using (model)
{
    var vocabulary = CheckpointVocabulary.Load(folder, manifest);
    using var engine = new ContinuousBatchingEngine(model, vocabulary, Path.GetFileName(Path.GetFullPath(checkpoint)), new EngineOptions());
    var options = new ChatOptions { MaxOutputTokens = maxTokens, Temperature = temperature, Seed = seed };
    IChatClient client = new LoomChatClient(engine, ChatTemplate.Named(template), options);
    Console.Error.WriteLine($"loaded {folder} ({client.GetService<ChatClientMetadata>()?.DefaultModelId})");

    using var cancel = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };

    if (promptWords.Count > 0)
    {
        await Reply(client, [new ChatMessage(ChatRole.User, string.Join(' ', promptWords))], cancel.Token);
        return 0;
    }

    var history = new List<ChatMessage>();
    while (true)
    {
        if (!Console.IsInputRedirected) Console.Write("> ");
        string? line = Console.ReadLine();
        if (string.IsNullOrWhiteSpace(line)) break;
        history.Add(new ChatMessage(ChatRole.User, line));
        history.Add(new ChatMessage(ChatRole.Assistant, await Reply(client, history, cancel.Token)));
    }
}
return 0;

// Streams the reply to the conversation to stdout as it is generated, and returns its text.
static async Task<string> Reply(IChatClient client, IList<ChatMessage> conversation, CancellationToken cancellationToken)
{
    var text = new System.Text.StringBuilder();
    try
    {
        await foreach (var update in client.GetStreamingResponseAsync(conversation, cancellationToken: cancellationToken))
        {
            Console.Write(update.Text);
            text.Append(update.Text);
        }
    }
    catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
    {
        // Ctrl-C: keep what was generated.
    }
    Console.WriteLine();
    return text.ToString();
}
