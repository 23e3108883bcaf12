using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Loom.Models;
using static TorchSharp.torch;

namespace Loom.Cli.Tests;

/// <summary><c>loom serve</c> as a child process: it prints its URL, answers over HTTP and exits 0 on SIGTERM.</summary>
public sealed class ServeCommandTests : IDisposable
{
    private readonly TempDirectory temp = new("loom-serve-");

    private string dir => temp.Path;

    public void Dispose() => temp.Dispose();

    private string SaveTinyCheckpoint()
    {
        string checkpoint = Path.Combine(dir, "tiny-run", "checkpoints", "step_00000001");
        Directory.CreateDirectory(checkpoint);
        var options = new DecoderLmOptions { VocabSize = 258, ModelDim = 32, NumLayers = 1, NumHeads = 2, NumKvHeads = 1, HeadDim = 16, MlpDim = 64, MaxSequenceLength = 128 };
        using var generator = new Generator(3);
        using var model = new DecoderLm(options, generator: generator);
        ModelCheckpoint.Save(checkpoint, model, new ModelManifest { Model = options, Vocabulary = "byte", Step = 1 });
        return checkpoint;
    }

    [Fact]
    public async Task ServeAnswersRequestsAndExitsZeroOnSigterm()
    {
        string checkpoint = SaveTinyCheckpoint();
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = dir };
        foreach (string a in new[] { Path.Combine(AppContext.BaseDirectory, "loom.dll"), "serve", "--checkpoint", checkpoint, "--port", "0", "--device", "cpu", "--engine", "sequential", "--api-key", "sk-test" })
            start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            string? first = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(2));
            if (first is null) Assert.Fail("loom serve printed nothing: " + await stderr);
            Assert.Contains("\"tiny-run\"", first); // the run folder's name, not step_00000001
            string apiBase = first[first.IndexOf("http://", StringComparison.Ordinal)..].Trim();

            using var http = new HttpClient();
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(apiBase.Replace("/v1", "/health", StringComparison.Ordinal))).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(apiBase + "/models")).StatusCode);
            using var request = new HttpRequestMessage(HttpMethod.Post, apiBase + "/completions")
            {
                Content = new StringContent("""{"model": "tiny-run", "prompt": "hello", "max_tokens": 4, "ignore_eos": true}""", Encoding.UTF8, "application/json"),
            };
            request.Headers.Authorization = new("Bearer", "sk-test");
            using var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(4, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await kill.WaitForExitAsync();
            string rest = await process.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromMinutes(1));
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(1));
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {rest} {await stderr}");
            Assert.Contains("loom: stopped", rest);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public void AnUnknownEngineIsAOneLineError()
    {
        var r = CliRunner.Run(dir, "serve", "--checkpoint", SaveTinyCheckpoint(), "--engine", "turbo");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("--engine takes batching or sequential, not 'turbo'", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr + r.Stdout);
    }

    [Fact]
    public void TheModelIsNamedAfterTheRunFolder()
    {
        Assert.Equal("notes", ServeCommand.DefaultModelName(Path.Combine(dir, "notes", "checkpoints", "step_00000150")));
        Assert.Equal("my-model", ServeCommand.DefaultModelName(Path.Combine(dir, "my-model") + Path.DirectorySeparatorChar));
    }
}
