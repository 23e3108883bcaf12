using static TorchSharp.torch;

namespace Loom.Models.VisionLanguage;

/// <summary>
/// The plain reference path for prompts with images: greedy decoding by a full forward pass over the whole sequence at
/// every step, no cache. Engines are held to it in tests; the image + text evaluation decodes with it.
/// </summary>
public static class ReferenceImageTextDecoder
{
    /// <summary>
    /// Greedy continuations of <paramref name="prompts"/>, rows of equal length (B, T) int64 whose placeholder ids
    /// (<see cref="ImageInputSpec.PlaceholderId"/>) take the soft tokens of <paramref name="pixels"/>, (B, M, H, W) in [0, 1],
    /// in order; each row stops after <paramref name="eosId"/> or <paramref name="maxNewTokens"/> tokens.
    /// </summary>
    /// <returns>Each row's new tokens, EOS excluded.</returns>
    /// <exception cref="ArgumentException">The model reads no images.</exception>
    public static IReadOnlyList<int[]> Greedy(LanguageModel model, Tensor prompts, Tensor pixels, int maxNewTokens, int eosId)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(pixels);
        var spec = model.ImageInput ?? throw new ArgumentException($"a {model.Options.Architecture} model reads no images");
        int rows = (int)prompts.shape[0];
        var outputs = Enumerable.Range(0, rows).Select(_ => new List<int>()).ToArray();
        var done = new bool[rows];
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var device = model.parameters().First().device;
        var soft = model.EncodeImages(pixels.to(device).flatten(0, 1));           // (B·M, K, D)
        soft = soft.reshape(-1, soft.shape[2]);                                    // (B·M·K, D)
        var promptMask = prompts.to(device).eq(spec.PlaceholderId);               // (B, T)
        var tokens = prompts.to(device);                                           // (B, T)
        for (int step = 0; step < maxNewTokens && !done.All(d => d); step++)
        {
            using var stepScope = NewDisposeScope();
            var mask = cat([promptMask, zeros(rows, tokens.shape[1] - promptMask.shape[1], @bool, device)], 1); // (B, T'): only the prompt's placeholders are images
            var next = model.Forward(tokens, soft, mask, null)[.., -1].argmax(-1);  // (B)
            var ids = next.cpu().data<long>().ToArray();
            for (int b = 0; b < rows; b++)
            {
                if (done[b]) continue;
                if (ids[b] == eosId) done[b] = true;
                else outputs[b].Add((int)ids[b]);
            }
            tokens = cat([tokens, next.unsqueeze(1)], 1).MoveToOuterDisposeScope(); // (B, T' + 1)
        }
        return [.. outputs.Select(o => o.ToArray())];
    }
}
