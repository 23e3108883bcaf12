using Xunit.Abstractions;
using Loom.Core;
using Loom.Models.Interop;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Loom decoders as Hugging Face GPT2LMHeadModel folders and back.</summary>
public sealed class HuggingFaceGpt2Tests(ITestOutputHelper output)
{
    /// <summary>A GPT-2-shaped tiny decoder: serial pre-LN blocks, LayerNorm and biases, learned positions, multi-head attention.</summary>
    internal static DecoderLmOptions Gpt2(bool tied = true, MlpActivation activation = MlpActivation.GeluTanh, int mlpDim = 128) =>
        TinyModels.Decoder(kvHeads: 4, parallel: false) with
        {
            Positions = PositionEncoding.Learned, Norm = NormKind.LayerNorm, UseBias = true, NormEpsilon = 1e-5,
            Activation = activation, MlpDim = mlpDim, SharedEmbeddings = tied, ScaleSharedLogits = false,
        };

    /// <summary>A model whose every parameter is drawn at random, so that a misplaced bias or norm weight shows.</summary>
    internal static DecoderLm Randomized(DecoderLmOptions options, long seed)
    {
        var model = Seeded.Model(options, seed);
        using var g = Seeded.Generator(seed + 100);
        using (no_grad())
            foreach (var (_, p) in model.named_parameters()) p.copy_(0.3 * randn(p.shape, generator: g));
        return model;
    }

    private static Tensor Tokens()
    {
        using var g = Seeded.Generator(3);
        return randint(0, 40, [2, 12], generator: g);
    }

    [Theory]
    [InlineData(true, MlpActivation.GeluTanh, 128)] // GPT-2 itself: tied, gelu_new, n_inner = 4 · n_embd
    [InlineData(false, MlpActivation.Gelu, 64)]     // untied, exact GELU, n_inner set
    public void ALoomGpt2RoundTripsThroughAHuggingFaceFolderExactly(bool tied, MlpActivation activation, int mlpDim)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var model = Randomized(Gpt2(tied, activation, mlpDim), 1);
        Assert.Same(HuggingFaceGpt2.Instance, HuggingFaceModels.Export(model, temp.Path, bosTokenId: 1, eosTokenId: 2));
        using var back = (DecoderLm)HuggingFaceModels.Import(temp.Path);

        Assert.Equal(model.Options, back.Options);
        var original = model.state_dict();
        foreach (var (name, tensor) in back.state_dict())
            Assert.True(original[name].equal(tensor).all().item<bool>(), name);
        var tokens = Tokens();
        Assert.True(model.forward(tokens).equal(back.forward(tokens)).all().item<bool>());

        var saved = SafeTensors.Load(temp.File(HuggingFaceModels.WeightsFile));
        Assert.Equal(tied, !saved.ContainsKey("lm_head.weight"));
        Assert.Equal([32L, 96L], saved["transformer.h.1.attn.c_attn.weight"].shape);
        Assert.Equal([32L, (long)mlpDim], saved["transformer.h.0.mlp.c_fc.weight"].shape);
        Assert.Equal([32L, 32L], saved["transformer.wpe.weight"].shape);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(temp.File(HuggingFaceModels.ConfigFile)))!;
        Assert.Equal("gpt2", config["model_type"]!.GetValue<string>());
        Assert.Equal(activation == MlpActivation.Gelu ? "gelu" : "gelu_new", config["activation_function"]!.GetValue<string>());
        Assert.Equal(mlpDim == 128 ? null : mlpDim, config["n_inner"]?.GetValue<int>());
    }

    private const string Config = """
        {
          "activation_function": "gelu_new",
          "architectures": ["GPT2LMHeadModel"],
          "attn_pdrop": 0.1,
          "bos_token_id": 39,
          "embd_pdrop": 0.1,
          "eos_token_id": 39,
          "initializer_range": 0.02,
          "layer_norm_epsilon": 1e-05,
          "model_type": "gpt2",
          "n_embd": 32,
          "n_head": 4,
          "n_inner": null,
          "n_layer": 2,
          "n_positions": 24,
          "reorder_and_upcast_attn": false,
          "resid_pdrop": 0.1,
          "scale_attn_by_inverse_layer_idx": false,
          "scale_attn_weights": true,
          "summary_activation": null,
          "summary_first_dropout": 0.1,
          "summary_proj_to_labels": true,
          "summary_type": "cls_index",
          "summary_use_proj": true,
          "torch_dtype": "float32",
          "transformers_version": "4.46.0",
          "use_cache": true,
          "vocab_size": 40
        }
        """;

    /// <summary>GPT-2's tensors as save_pretrained names them, drawn at random: Conv1D kernels (in, out), c_attn fused.</summary>
    private static Dictionary<string, Tensor> HuggingFaceTensors(string prefix = "transformer.")
    {
        using var g = Seeded.Generator(9);
        Tensor R(params long[] shape) => 0.3 * randn(shape, generator: g);
        var hf = new Dictionary<string, Tensor>
        {
            [prefix + "wte.weight"] = R(40, 32), [prefix + "wpe.weight"] = R(24, 32),
            [prefix + "ln_f.weight"] = 1 + R(32), [prefix + "ln_f.bias"] = R(32),
        };
        for (int i = 0; i < 2; i++)
        {
            string p = $"{prefix}h.{i}.";
            hf[p + "ln_1.weight"] = 1 + R(32);
            hf[p + "ln_1.bias"] = R(32);
            hf[p + "attn.c_attn.weight"] = R(32, 96);
            hf[p + "attn.c_attn.bias"] = R(96);
            hf[p + "attn.c_proj.weight"] = R(32, 32);
            hf[p + "attn.c_proj.bias"] = R(32);
            hf[p + "ln_2.weight"] = 1 + R(32);
            hf[p + "ln_2.bias"] = R(32);
            hf[p + "mlp.c_fc.weight"] = R(32, 128);
            hf[p + "mlp.c_fc.bias"] = R(128);
            hf[p + "mlp.c_proj.weight"] = R(128, 32);
            hf[p + "mlp.c_proj.bias"] = R(32);
        }
        return hf;
    }

    /// <summary>
    /// GPT2LMHeadModel's forward written out from modeling_gpt2.py with plain torch ops: token plus position embedding;
    /// per block x += c_proj(attn(c_attn(ln_1 x))), x += mlp(ln_2 x) with gelu_new; logits = ln_f(x) · wteᵀ.
    /// </summary>
    private static Tensor ReferenceForward(Dictionary<string, Tensor> hf, Tensor tokens, int layers = 2, int heads = 4)
    {
        long b = tokens.shape[0], t = tokens.shape[1], d = hf["transformer.wte.weight"].shape[1], dh = d / heads;
        Tensor Ln(Tensor x, string name) => nn.functional.layer_norm(x, [d], hf[name + ".weight"], hf[name + ".bias"], 1e-5);
        Tensor Conv1D(Tensor x, string name) => x.matmul(hf[name + ".weight"]) + hf[name + ".bias"]; // x W + b, W (in, out)
        Tensor GeluNew(Tensor x) => 0.5 * x * (1 + tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x.pow(3))));
        var x = hf["transformer.wte.weight"][tokens] + hf["transformer.wpe.weight"].narrow(0, 0, t); // (B, T, D)
        var causal = ones(t, t).tril().to(ScalarType.Bool);
        for (int i = 0; i < layers; i++)
        {
            string p = $"transformer.h.{i}.";
            var qkv = Conv1D(Ln(x, p + "ln_1"), p + "attn.c_attn");                              // (B, T, 3D)
            Tensor Heads(int part) => qkv.narrow(-1, part * d, d).view(b, t, heads, dh).transpose(1, 2); // (B, H, T, Dh)
            var scores = Heads(0).matmul(Heads(1).transpose(-1, -2)) / Math.Sqrt(dh);             // (B, H, T, T)
            var attended = scores.masked_fill(causal.logical_not(), double.NegativeInfinity).softmax(-1).matmul(Heads(2));
            x = x + Conv1D(attended.transpose(1, 2).reshape(b, t, d), p + "attn.c_proj");
            x = x + Conv1D(GeluNew(Conv1D(Ln(x, p + "ln_2"), p + "mlp.c_fc")), p + "mlp.c_proj");
        }
        return Ln(x, "transformer.ln_f").matmul(hf["transformer.wte.weight"].t());                 // (B, T, V)
    }

    /// <summary>
    /// A folder as transformers' save_pretrained lays out a 2-layer GPT2LMHeadModel (config.json fields, names, Conv1D
    /// shapes, tied lm_head omitted), sharded with an index: Loom imports it, computes exactly what a Loom model given the
    /// same weights by Loom's names computes, and what GPT-2's forward written out in plain torch computes.
    /// </summary>
    [Fact]
    public void AFolderLaidOutAsTransformersSavesAGpt2ImportsAndScoresTheSame()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), Config);
        var hf = HuggingFaceTensors();
        HuggingFaceModels.WriteSharded(temp.Path, hf, maxShardBytes: 40 * 1024);
        Assert.True(Directory.GetFiles(temp.Path, "model-0000?-of-0000?.safetensors").Length > 1);

        using var imported = (DecoderLm)HuggingFaceModels.Import(temp.Path);
        var o = (DecoderLmOptions)imported.Options;
        Assert.Equal(Gpt2() with { MaxSequenceLength = 24 }, o);

        // The same weights set by Loom's names: Conv1D kernels transposed, c_attn's columns split into q, k and v by hand.
        using var direct = new DecoderLm(o);
        var state = direct.state_dict();
        using (no_grad())
        {
            state["embed"].copy_(hf["transformer.wte.weight"]);
            state["pos_embed"].copy_(hf["transformer.wpe.weight"]);
            state["final_norm.weight"].copy_(hf["transformer.ln_f.weight"]);
            state["final_norm.bias"].copy_(hf["transformer.ln_f.bias"]);
            for (int i = 0; i < 2; i++)
            {
                string p = $"transformer.h.{i}.", b = $"blocks.{i}.";
                foreach (var (loom, name) in new[] { ("norm", "ln_1"), ("mlp_norm", "ln_2") })
                {
                    state[$"{b}{loom}.weight"].copy_(hf[$"{p}{name}.weight"]);
                    state[$"{b}{loom}.bias"].copy_(hf[$"{p}{name}.bias"]);
                }
                var cAttn = hf[p + "attn.c_attn.weight"];
                var cAttnBias = hf[p + "attn.c_attn.bias"];
                foreach (var (loom, columns) in new[] { ("wq", 0), ("wk", 32), ("wv", 64) })
                {
                    state[$"{b}attn.{loom}.weight"].copy_(cAttn[.., columns..(columns + 32)].T);
                    state[$"{b}attn.{loom}.bias"].copy_(cAttnBias[columns..(columns + 32)]);
                }
                state[b + "attn.wo.weight"].copy_(hf[p + "attn.c_proj.weight"].T);
                state[b + "attn.wo.bias"].copy_(hf[p + "attn.c_proj.bias"]);
                state[b + "mlp.up.weight"].copy_(hf[p + "mlp.c_fc.weight"].T);
                state[b + "mlp.up.bias"].copy_(hf[p + "mlp.c_fc.bias"]);
                state[b + "mlp.down.weight"].copy_(hf[p + "mlp.c_proj.weight"].T);
                state[b + "mlp.down.bias"].copy_(hf[p + "mlp.c_proj.bias"]);
            }
        }
        var tokens = Tokens();
        var (fromFolder, fromNames) = (imported.forward(tokens), direct.forward(tokens));
        Assert.True(fromFolder.equal(fromNames).all().item<bool>(), $"max difference {(fromFolder - fromNames).abs().max().item<float>()}");
        var reference = ReferenceForward(hf, tokens);
        double difference = (fromFolder - reference).abs().max().item<float>();
        output.WriteLine($"GPT-2: max logit difference from the reference forward {difference:E2}");
        Assert.True(difference < 1e-5, $"max difference from the reference forward {difference}");
    }

    [Fact]
    public void OpenAisOriginalLayoutWithoutThePrefixAndWithMaskBuffersImportsTheSame()
    {
        using var scope = NewDisposeScope();
        using var saved = new TempDirectory("loom-hf-");
        using var original = new TempDirectory("loom-hf-");
        File.WriteAllText(saved.File("config.json"), Config);
        File.WriteAllText(original.File("config.json"), Config);
        SafeTensors.Save(saved.File(HuggingFaceModels.WeightsFile), HuggingFaceTensors());
        var old = HuggingFaceTensors(prefix: "");
        for (int i = 0; i < 2; i++)
        {
            old[$"h.{i}.attn.bias"] = ones(1, 1, 24, 24).tril();  // the causal mask buffer old checkpoints hold
            old[$"h.{i}.attn.masked_bias"] = tensor(-1e4f);
        }
        SafeTensors.Save(original.File(HuggingFaceModels.WeightsFile), old);
        using var a = HuggingFaceModels.Import(saved.Path);
        using var b = HuggingFaceModels.Import(original.Path);
        var tokens = Tokens();
        Assert.True(((DecoderLm)a).forward(tokens).equal(((DecoderLm)b).forward(tokens)).all().item<bool>());
    }

    [Fact]
    public void ConfigurationsNoGpt2RepresentsAreRefusedNamingTheOption()
    {
        var gpt2 = HuggingFaceGpt2.Instance;
        Assert.Null(gpt2.WhyNot(Gpt2()));
        Assert.Contains("model.parallel_block = true", gpt2.WhyNot(Gpt2() with { ParallelBlock = true }));
        Assert.Contains("model.norm = RmsNorm", gpt2.WhyNot(Gpt2() with { Norm = NormKind.RmsNorm }));
        Assert.Contains("model.use_bias = false", gpt2.WhyNot(Gpt2() with { UseBias = false }));
        Assert.Contains("model.activation = SwiGlu", gpt2.WhyNot(Gpt2() with { Activation = MlpActivation.SwiGlu }));
        Assert.Contains("model.positions = Rotary", gpt2.WhyNot(Gpt2() with { Positions = PositionEncoding.Rotary }));
        Assert.Contains("model.num_kv_heads = 2", gpt2.WhyNot(Gpt2() with { NumKvHeads = 2 }));
        Assert.Contains("model.head_dim = 16", gpt2.WhyNot(Gpt2() with { HeadDim = 16 }));
        Assert.Contains("model.scale_shared_logits = true", gpt2.WhyNot(Gpt2() with { ScaleSharedLogits = true }));
        Assert.Contains("model.moe", gpt2.WhyNot(Gpt2() with { Moe = new MoeOptions() }));
        Assert.Contains("decoder-only", gpt2.WhyNot(TinyModels.T5()));

        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var neither = Seeded.Model(Gpt2() with { Norm = NormKind.RmsNorm }, 1);
        var message = Assert.Throws<ArgumentException>(() => HuggingFaceModels.Export(neither, temp.Path)).Message;
        Assert.Contains("not LlamaForCausalLM: model.activation = GeluTanh: Llama's MLP is SwiGLU", message);
        Assert.Contains("not GPT2LMHeadModel: model.norm = RmsNorm: GPT-2 uses LayerNorm", message);
        Assert.False(File.Exists(temp.File(HuggingFaceModels.ConfigFile)));
    }

    [Fact]
    public void BadGpt2FoldersAreOneLineErrorsNamingWhatIsWrong()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), Config);
        var hf = HuggingFaceTensors();
        InvalidDataException Import(Dictionary<string, Tensor> tensors)
        {
            SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), tensors);
            return Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path));
        }

        var missing = new Dictionary<string, Tensor>(hf);
        missing.Remove("transformer.h.1.mlp.c_fc.weight");
        Assert.Contains("missing tensor 'transformer.h.1.mlp.c_fc.weight'", Import(missing).Message);
        var notTransposed = new Dictionary<string, Tensor>(hf) { ["transformer.h.0.mlp.c_fc.weight"] = zeros(128, 32) };
        Assert.Contains("tensor 'transformer.h.0.mlp.c_fc.weight' has shape [128, 32], config.json implies [32, 128]", Import(notTransposed).Message);
        var extra = new Dictionary<string, Tensor>(hf) { ["transformer.h.2.ln_1.weight"] = zeros(32) };
        Assert.Contains("unexpected tensors transformer.h.2.ln_1.weight", Import(extra).Message);
        var untied = new Dictionary<string, Tensor>(hf) { ["lm_head.weight"] = zeros(40, 32) };
        Assert.Contains("'lm_head.weight' differs from 'transformer.wte.weight'", Import(untied).Message);
        var tied = new Dictionary<string, Tensor>(hf) { ["lm_head.weight"] = hf["transformer.wte.weight"].clone() };
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), tied);
        HuggingFaceModels.Import(temp.Path).Dispose(); // an lm_head equal to the embedding is accepted

        File.WriteAllText(temp.File("config.json"), Config.Replace("\"gelu_new\"", "\"relu\""));
        Assert.Contains("activation_function = relu", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.ReadOptions(temp.Path)).Message);
        File.WriteAllText(temp.File("config.json"), Config.Replace("\"scale_attn_weights\": true", "\"scale_attn_weights\": false"));
        Assert.Contains("scale_attn_weights = false", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.ReadOptions(temp.Path)).Message);
    }
}
