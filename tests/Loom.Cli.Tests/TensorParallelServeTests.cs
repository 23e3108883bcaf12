using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Cli.Tests;

/// <summary><c>mpirun -n 2 loom serve</c>: the model split over two ranks answers as one process does.</summary>
public sealed class TensorParallelServeTests : IDisposable
{
    private readonly TempDirectory temp = new("loom-serve-tp-");

    public void Dispose() => temp.Dispose();

    private string SaveTinyCheckpoint()
    {
        string checkpoint = Path.Combine(temp.Path, "tp-run", "checkpoints", "step_00000001");
        Directory.CreateDirectory(checkpoint);
        // Grouped-query attention (2 key/value heads): the split cuts queries, keys, values and the MLP.
        var options = new DecoderLmOptions { VocabSize = 258, ModelDim = 32, NumLayers = 2, NumHeads = 4, NumKvHeads = 2, HeadDim = 8, MlpDim = 64, MaxSequenceLength = 128 };
        using var generator = new Generator(5);
        using var model = new DecoderLm(options, generator: generator);
        ModelCheckpoint.Save(checkpoint, model, new ModelManifest { Model = options, Vocabulary = "byte", Step = 1 });
        return checkpoint;
    }

    [SkippableFact]
    public async Task TwoRanksUnderMpirunGiveTheTokensOfOneProcessForTwentyConcurrentRequests()
    {
        MpiRun.RequireMpirun();
        string checkpoint = SaveTinyCheckpoint();
        string[] serve = ["dotnet", Path.Combine(AppContext.BaseDirectory, "loom.dll"), "serve", "--checkpoint", checkpoint, "--port", "0", "--device", "cpu", "--threads", "1"];
        var one = await Completions(serve, expectSplit: false);
        var two = await Completions(["mpirun", "-n", "2", .. serve], expectSplit: true);
        Assert.Equal(20, one.Count);
        Assert.All(one, text => Assert.False(string.IsNullOrEmpty(text)));
        Assert.Equal(one, two);
    }

    /// <summary>Starts the server, sends 20 concurrent completions (even: greedy, odd: seeded sampling) and returns their texts.</summary>
    private async Task<List<string>> Completions(string[] command, bool expectSplit)
    {
        var start = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = temp.Path };
        foreach (string a in command.Skip(1)) start.ArgumentList.Add(a);
        start.Environment["OMP_NUM_THREADS"] = "1";
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            bool split = false;
            string? apiBase = null;
            while (apiBase is null)
            {
                string? line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(3));
                if (line is null) Assert.Fail($"{string.Join(' ', command)} exited before serving: " + await stderr);
                split |= line.Contains("tensor parallel over 2 ranks", StringComparison.Ordinal);
                if (line.Contains("serving model", StringComparison.Ordinal)) apiBase = line[line.IndexOf("http://", StringComparison.Ordinal)..].Trim();
            }
            Assert.Equal(expectSplit, split);
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
            async Task<string> Complete(int i)
            {
                string sampling = i % 2 == 0 ? "\"temperature\": 0" : $"\"temperature\": 1, \"top_p\": 0.9, \"seed\": {i}";
                using var content = new StringContent($$"""{"model": "tp-run", "prompt": "request {{i}}:", "max_tokens": 12, "ignore_eos": true, {{sampling}}}""", Encoding.UTF8, "application/json");
                using var response = await http.PostAsync(apiBase + "/completions", content);
                string body = await response.Content.ReadAsStringAsync();
                Assert.True(response.IsSuccessStatusCode, body);
                return JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
            }
            return [.. await Task.WhenAll(Enumerable.Range(0, 20).Select(Complete))];
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
    }
}
