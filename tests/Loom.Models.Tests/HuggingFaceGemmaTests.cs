using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Models.Interop;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Loom decoders as Hugging Face GemmaForCausalLM and Gemma2ForCausalLM folders and back, and Gemma's math against a reference.</summary>
public sealed class HuggingFaceGemmaTests(ITestOutputHelper output)
{
    /// <summary>
    /// A Gemma-shaped tiny decoder: GeGLU, √d embedding scale, (1 + w) RMSNorms, grouped K/V heads 16 wide (not
    /// d_model / heads = 8); Gemma 2 adds post-norms, a query scale and soft caps small enough to bite on random weights.
    /// </summary>
    private static DecoderLmOptions Gemma(bool gemma2, bool tied = true, bool capped = true) => TinyModels.Decoder(kvHeads: 2, parallel: false) with
    {
        HeadDim = 16, Activation = MlpActivation.GeGlu, ScaleEmbeddings = true, NormUnitOffset = true,
        SharedEmbeddings = tied, ScaleSharedLogits = false, RopeBase = 10000,
        PostNorms = gemma2, QueryPreAttnScalar = gemma2 ? 24 : null,
        AttentionLogitSoftcap = gemma2 && capped ? 2.0 : null, FinalLogitSoftcap = gemma2 && capped ? 3.0 : null,
    };

    private static Tensor Tokens()
    {
        using var g = Seeded.Generator(3);
        return randint(0, 40, [2, 12], generator: g);
    }

    [Theory]
    [InlineData(false, true, true)]  // Gemma, tied
    [InlineData(false, false, true)] // Gemma, untied
    [InlineData(true, true, true)]   // Gemma 2 with both soft caps
    [InlineData(true, false, false)] // Gemma 2, untied, caps switched off (null in config.json)
    public void ALoomGemmaRoundTripsThroughAHuggingFaceFolderExactly(bool gemma2, bool tied, bool capped)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var model = HuggingFaceGpt2Tests.Randomized(Gemma(gemma2, tied, capped), 1);
        var written = HuggingFaceModels.Export(model, temp.Path, bosTokenId: 2, eosTokenId: 1);
        Assert.Same(gemma2 ? HuggingFaceGemma.Gemma2 : HuggingFaceGemma.Gemma, written);
        using var back = (DecoderLm)HuggingFaceModels.Import(temp.Path);

        Assert.Equal(model.Options, back.Options);
        var original = model.state_dict();
        foreach (var (name, tensor) in back.state_dict())
            Assert.True(original[name].equal(tensor).all().item<bool>(), name);
        var tokens = Tokens();
        Assert.True(model.forward(tokens).equal(back.forward(tokens)).all().item<bool>());

        var saved = SafeTensors.Load(temp.File(HuggingFaceModels.WeightsFile));
        Assert.Equal(tied, !saved.ContainsKey("lm_head.weight"));
        Assert.Equal([64L, 32L], saved["model.layers.1.self_attn.q_proj.weight"].shape);
        Assert.Equal([32L, 32L], saved["model.layers.1.self_attn.k_proj.weight"].shape);
        Assert.Equal(gemma2, saved.ContainsKey("model.layers.0.post_feedforward_layernorm.weight"));
        // The norms' stored weights are Gemma's w of 1 + w, exactly Loom's.
        Assert.True(saved["model.norm.weight"].equal(original["final_norm.weight"]).all().item<bool>());
        var config = JsonNode.Parse(File.ReadAllText(temp.File(HuggingFaceModels.ConfigFile)))!;
        Assert.Equal(gemma2 ? "gemma2" : "gemma", config["model_type"]!.GetValue<string>());
        Assert.Equal(16, config["head_dim"]!.GetValue<int>());
        Assert.Equal("gelu_pytorch_tanh", config["hidden_activation"]!.GetValue<string>());
        if (gemma2)
        {
            Assert.Equal(24.0, config["query_pre_attn_scalar"]!.GetValue<double>());
            Assert.Equal(capped ? 2.0 : null, config["attn_logit_softcapping"]?.GetValue<double>());
            Assert.Equal(capped ? 3.0 : null, config["final_logit_softcapping"]?.GetValue<double>());
            Assert.Equal(32, config["sliding_window"]!.GetValue<int>());
        }
    }

    private static string Config(bool gemma2) => gemma2
        ? """
          {
            "architectures": ["Gemma2ForCausalLM"],
            "attention_bias": false,
            "attention_dropout": 0.0,
            "attn_logit_softcapping": 2.0,
            "bos_token_id": 2,
            "cache_implementation": "hybrid",
            "eos_token_id": 1,
            "final_logit_softcapping": 3.0,
            "head_dim": 16,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_activation": "gelu_pytorch_tanh",
            "hidden_size": 32,
            "initializer_range": 0.02,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
            "model_type": "gemma2",
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "pad_token_id": 0,
            "query_pre_attn_scalar": 24,
            "rms_norm_eps": 1e-06,
            "rope_theta": 10000.0,
            "sliding_window": 32,
            "torch_dtype": "float32",
            "transformers_version": "4.46.0",
            "use_cache": true,
            "vocab_size": 40
          }
          """
        : """
          {
            "architectures": ["GemmaForCausalLM"],
            "attention_bias": false,
            "attention_dropout": 0.0,
            "bos_token_id": 2,
            "eos_token_id": 1,
            "head_dim": 16,
            "hidden_act": "gelu",
            "hidden_activation": null,
            "hidden_size": 32,
            "initializer_range": 0.02,
            "intermediate_size": 64,
            "max_position_embeddings": 32,
            "model_type": "gemma",
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "pad_token_id": 0,
            "rms_norm_eps": 1e-06,
            "rope_theta": 10000.0,
            "torch_dtype": "float32",
            "transformers_version": "4.46.0",
            "use_cache": true,
            "vocab_size": 40
          }
          """;

    /// <summary>Gemma's (or Gemma 2's) tensors as save_pretrained names them (tied: no lm_head), drawn at random; norm weights are w of 1 + w.</summary>
    private static Dictionary<string, Tensor> HuggingFaceTensors(bool gemma2)
    {
        using var g = Seeded.Generator(9);
        Tensor R(params long[] shape) => 0.3 * randn(shape, generator: g);
        var hf = new Dictionary<string, Tensor> { ["model.embed_tokens.weight"] = R(40, 32), ["model.norm.weight"] = R(32) };
        for (int i = 0; i < 2; i++)
        {
            string p = $"model.layers.{i}.";
            hf[p + "input_layernorm.weight"] = R(32);
            hf[p + "post_attention_layernorm.weight"] = R(32);
            if (gemma2)
            {
                hf[p + "pre_feedforward_layernorm.weight"] = R(32);
                hf[p + "post_feedforward_layernorm.weight"] = R(32);
            }
            hf[p + "self_attn.q_proj.weight"] = R(64, 32);
            hf[p + "self_attn.k_proj.weight"] = R(32, 32);
            hf[p + "self_attn.v_proj.weight"] = R(32, 32);
            hf[p + "self_attn.o_proj.weight"] = R(32, 64);
            hf[p + "mlp.gate_proj.weight"] = R(64, 32);
            hf[p + "mlp.up_proj.weight"] = R(64, 32);
            hf[p + "mlp.down_proj.weight"] = R(32, 64);
        }
        return hf;
    }

    /// <summary>
    /// GemmaForCausalLM's (or Gemma2ForCausalLM's) forward written out from modeling_gemma.py / modeling_gemma2.py with
    /// plain torch ops, in float32 as transformers computes it: embeddings × the float32 √d; GemmaRMSNorm
    /// x · rsqrt(mean(x²) + ε) · (1 + w); rotary angles from float32 inverse frequencies, rotate_half; eager attention
    /// (scores × scaling, Gemma 2's cap · tanh(s / cap), causal mask, float32 softmax); GeGLU with tanh GELU written out;
    /// Gemma 2's post-attention and post-feedforward norms; tied logits, Gemma 2's final soft cap.
    /// </summary>
    private static Tensor ReferenceForward(Dictionary<string, Tensor> hf, Tensor tokens, bool gemma2)
    {
        const int layers = 2, heads = 4, kvHeads = 2, dh = 16;
        const double eps = 1e-6;
        long b = tokens.shape[0], t = tokens.shape[1], d = 32;
        Tensor Norm(Tensor x, string name) => x * (x.pow(2).mean([-1], keepdim: true) + eps).rsqrt() * (1.0 + hf[name + ".weight"]);
        Tensor Linear(Tensor x, string name) => x.matmul(hf[name + ".weight"].t());
        Tensor GeluTanh(Tensor x) => 0.5 * x * (1 + tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x.pow(3))));
        Tensor RotateHalf(Tensor x) => cat([-x.narrow(-1, dh / 2, dh / 2), x.narrow(-1, 0, dh / 2)], -1);

        var invFreq = 1.0f / pow(10000.0f, arange(0, dh, 2, dtype: ScalarType.Int64).to(ScalarType.Float32) / dh); // (Dh/2) float32
        var freqs = outer(arange(t, dtype: ScalarType.Float32), invFreq);                                          // (T, Dh/2)
        var emb = cat([freqs, freqs], -1);                                                                          // (T, Dh)
        var (cos, sin) = (emb.cos(), emb.sin());
        double scaling = gemma2 ? Math.Pow(24, -0.5) : 1 / Math.Sqrt(dh);
        var causal = ones(t, t).tril().to(ScalarType.Bool);

        var x = hf["model.embed_tokens.weight"][tokens] * tensor(Math.Sqrt(d), ScalarType.Float32);            // (B, T, D)
        for (int i = 0; i < layers; i++)
        {
            string p = $"model.layers.{i}.";
            var h = Norm(x, p + "input_layernorm");
            var q = Linear(h, p + "self_attn.q_proj").view(b, t, heads, dh).transpose(1, 2);                     // (B, H, T, Dh)
            var k = Linear(h, p + "self_attn.k_proj").view(b, t, kvHeads, dh).transpose(1, 2);                   // (B, Hkv, T, Dh)
            var v = Linear(h, p + "self_attn.v_proj").view(b, t, kvHeads, dh).transpose(1, 2);
            (q, k) = (q * cos + RotateHalf(q) * sin, k * cos + RotateHalf(k) * sin);
            (k, v) = (k.repeat_interleave(heads / kvHeads, dim: 1), v.repeat_interleave(heads / kvHeads, dim: 1)); // (B, H, T, Dh)
            var scores = q.matmul(k.transpose(2, 3)) * scaling;                                                     // (B, H, T, T)
            if (gemma2) scores = tanh(scores / 2.0) * 2.0;
            scores = scores.masked_fill(causal.logical_not(), double.NegativeInfinity);
            var attended = Linear(scores.softmax(-1, ScalarType.Float32).matmul(v).transpose(1, 2).reshape(b, t, heads * dh), p + "self_attn.o_proj");
            if (gemma2) attended = Norm(attended, p + "post_attention_layernorm");
            x = x + attended;
            h = Norm(x, p + (gemma2 ? "pre_feedforward_layernorm" : "post_attention_layernorm"));
            var fed = Linear(GeluTanh(Linear(h, p + "mlp.gate_proj")) * Linear(h, p + "mlp.up_proj"), p + "mlp.down_proj");
            if (gemma2) fed = Norm(fed, p + "post_feedforward_layernorm");
            x = x + fed;
        }
        var logits = Norm(x, "model.norm").matmul(hf["model.embed_tokens.weight"].t());                           // (B, T, V)
        return gemma2 ? tanh(logits / 3.0) * 3.0 : logits;
    }

    /// <summary>
    /// A folder as transformers' save_pretrained lays out a 2-layer Gemma or Gemma 2 (config.json fields, names and shapes,
    /// tied lm_head omitted; Gemma 2 sharded with an index): Loom imports it, computes exactly what a Loom model given the
    /// same weights by Loom's names computes, and within 1e-5 what transformers' forward, written out above, computes.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AFolderLaidOutAsTransformersSavesAGemmaImportsAndScoresAsTransformersDoes(bool gemma2)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), Config(gemma2));
        var hf = HuggingFaceTensors(gemma2);
        if (gemma2)
        {
            HuggingFaceModels.WriteSharded(temp.Path, hf, maxShardBytes: 40 * 1024);
            Assert.True(Directory.GetFiles(temp.Path, "model-0000?-of-0000?.safetensors").Length > 1);
        }
        else
        {
            SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), hf);
        }

        using var imported = (DecoderLm)HuggingFaceModels.Import(temp.Path);
        var o = (DecoderLmOptions)imported.Options;
        // Gemma 2's window (32) is shorter than max_position_embeddings (64): the context is cut to it.
        Assert.Equal(Gemma(gemma2), o);

        using var direct = new DecoderLm(o);
        var state = direct.state_dict();
        using (no_grad())
        {
            state["embed"].copy_(hf["model.embed_tokens.weight"]);
            state["final_norm.weight"].copy_(hf["model.norm.weight"]);
            for (int i = 0; i < 2; i++)
            {
                string p = $"model.layers.{i}.", b = $"blocks.{i}.";
                state[b + "norm.weight"].copy_(hf[p + "input_layernorm.weight"]);
                if (gemma2)
                {
                    state[b + "post_attn_norm.weight"].copy_(hf[p + "post_attention_layernorm.weight"]);
                    state[b + "mlp_norm.weight"].copy_(hf[p + "pre_feedforward_layernorm.weight"]);
                    state[b + "post_mlp_norm.weight"].copy_(hf[p + "post_feedforward_layernorm.weight"]);
                }
                else
                {
                    state[b + "mlp_norm.weight"].copy_(hf[p + "post_attention_layernorm.weight"]);
                }
                foreach (var (loom, name) in new[] { ("wq", "q"), ("wk", "k"), ("wv", "v"), ("wo", "o") })
                    state[$"{b}attn.{loom}.weight"].copy_(hf[$"{p}self_attn.{name}_proj.weight"]);
                foreach (var name in new[] { "gate", "up", "down" })
                    state[$"{b}mlp.{name}.weight"].copy_(hf[$"{p}mlp.{name}_proj.weight"]);
            }
        }
        var tokens = Tokens();
        var (fromFolder, fromNames) = (imported.forward(tokens), direct.forward(tokens));
        Assert.True(fromFolder.equal(fromNames).all().item<bool>(), $"max difference {(fromFolder - fromNames).abs().max().item<float>()}");
        var reference = ReferenceForward(hf, tokens, gemma2);
        double difference = (fromFolder - reference).abs().max().item<float>();
        output.WriteLine($"{(gemma2 ? "Gemma 2" : "Gemma")}: max logit difference from the reference forward {difference:E2} (logits up to {reference.abs().max().item<float>():F2})");
        Assert.True(difference < 1e-5, $"max difference from the reference forward {difference}");
    }

    /// <summary>Soft-capped attention gives the same logits whole, through a KV cache step by step, and packed beside another example.</summary>
    [Fact]
    public void Gemma2ScoresTheSameWholeCachedAndPacked()
    {
        using var scope = NewDisposeScope();
        using var model = HuggingFaceGpt2Tests.Randomized(Gemma(gemma2: true), 1);
        var tokens = Tokens().narrow(0, 0, 1);                                       // (1, 12)
        var whole = model.forward(tokens);                                           // (1, 12, V)

        using var cache = KvCache.For(model, 1, 12);
        var prefill = cache.Run(model, tokens.narrow(1, 0, 8));                      // (1, 8, V)
        var steps = Enumerable.Range(8, 4).Select(i => cache.Run(model, tokens.narrow(1, i, 1))).ToList();
        var cached = cat([prefill, .. steps], 1);
        Assert.True(whole.allclose(cached, rtol: 0, atol: 1e-5), $"cached: max difference {(whole - cached).abs().max().item<float>()}");

        // Packed: the 12 tokens as example 1, then 5 other tokens as example 2 restarting at position 0.
        var other = randint(0, 40, [1, 5], generator: Seeded.Generator(4));
        var row = cat([tokens, other], 1);                                            // (1, 17)
        var segments = cat([ones(1, 12, dtype: ScalarType.Int64), full(1, 5, 2L, dtype: ScalarType.Int64)], 1);
        var positions = cat([arange(12L).unsqueeze(0), arange(5L).unsqueeze(0)], 1);
        var packed = model.Forward(row, new PackedLayout(segments, positions));       // (1, 17, V)
        Assert.True(whole.allclose(packed.narrow(1, 0, 12), rtol: 0, atol: 1e-5), "packed example 1");
        Assert.True(model.forward(other).allclose(packed.narrow(1, 12, 5), rtol: 0, atol: 1e-5), "packed example 2");
    }

    /// <summary>Gemma 2's options train: a few Adam steps on one batch lower the loss, with a finite gradient on every parameter.</summary>
    [Fact]
    public void Gemma2TrainsWithAGradientOnEveryParameter()
    {
        using var scope = NewDisposeScope();
        using var model = HuggingFaceGpt2Tests.Randomized(Gemma(gemma2: true), 1);
        var tokens = Tokens();
        var (inputs, targets) = (tokens.narrow(1, 0, 11), tokens.narrow(1, 1, 11));
        var optimizer = optim.Adam(model.parameters(), lr: 0.01);
        double first = 0, last = 0;
        for (int step = 0; step < 5; step++)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = model.Loss(inputs, targets, zLossWeight: 0).Total;
            loss.backward();
            if (step == 0)
                foreach (var (name, p) in model.named_parameters())
                    Assert.True(p.grad is { } grad && grad.isfinite().all().item<bool>() && grad.abs().sum().item<float>() > 0, $"{name} has no finite, nonzero gradient");
            optimizer.step();
            (first, last) = (step == 0 ? loss.item<float>() : first, loss.item<float>());
        }
        Assert.True(last < first, $"loss went from {first} to {last}");
    }

    [Fact]
    public void ConfigurationsNoGemmaRepresentsAreRefusedNamingTheOption()
    {
        var (gemma, gemma2) = (HuggingFaceGemma.Gemma, HuggingFaceGemma.Gemma2);
        Assert.Null(gemma.WhyNot(Gemma(false)));
        Assert.Null(gemma2.WhyNot(Gemma(true)));
        Assert.Contains("model.norm_unit_offset = false", gemma.WhyNot(Gemma(false) with { NormUnitOffset = false }));
        Assert.Contains("model.scale_embeddings = false", gemma.WhyNot(Gemma(false) with { ScaleEmbeddings = false }));
        Assert.Contains("model.activation = SwiGlu", gemma.WhyNot(Gemma(false) with { Activation = MlpActivation.SwiGlu }));
        Assert.Contains("model.use_bias = true", gemma.WhyNot(Gemma(false) with { UseBias = true }));
        Assert.Contains("model.rope_scaling is set", gemma.WhyNot(Gemma(false) with { RopeScaling = new RopeScaling { Factor = 2 } }));
        Assert.Contains("model.scale_shared_logits = true", gemma.WhyNot(Gemma(false) with { ScaleSharedLogits = true }));
        Assert.Contains("model.post_norms = true: Gemma has no norms", gemma.WhyNot(Gemma(true)));
        Assert.Contains("model.final_logit_softcap = 3: Gemma does not cap", gemma.WhyNot(Gemma(false) with { FinalLogitSoftcap = 3 }));
        Assert.Contains("model.post_norms = false: Gemma 2", gemma2.WhyNot(Gemma(false) with { QueryPreAttnScalar = 16 }));
        Assert.Contains("model.query_pre_attn_scalar is null", gemma2.WhyNot(Gemma(true) with { QueryPreAttnScalar = null }));
        // Llama and GPT-2 refuse Gemma's options by name.
        Assert.Contains("model.scale_embeddings = true: Llama", HuggingFaceLlama.Instance.WhyNot(Gemma(false) with { Activation = MlpActivation.SwiGlu }));
        Assert.Contains("model.attention_logit_softcap = 2: Llama", HuggingFaceLlama.Instance.WhyNot(TinyModels.Decoder(parallel: false) with { ScaleSharedLogits = false, AttentionLogitSoftcap = 2 }));
        Assert.Contains("model.post_norms = true: GPT-2", HuggingFaceGpt2.Instance.WhyNot(HuggingFaceGpt2Tests.Gpt2() with { PostNorms = true }));
        // Invalid combinations are refused when the options are validated.
        Assert.Contains("model.norm_unit_offset = true needs model.norm = rms_norm", Assert.Throws<ArgumentException>(() => (Gemma(false) with { Norm = NormKind.LayerNorm }).Validate()).Message);
        Assert.Contains("model.post_norms = true needs serial blocks", Assert.Throws<ArgumentException>(() => (Gemma(true) with { ParallelBlock = true }).Validate()).Message);
        Assert.Contains("model.attention_logit_softcap = 0", Assert.Throws<ArgumentException>(() => (Gemma(true) with { AttentionLogitSoftcap = 0 }).Validate()).Message);
    }

    [Fact]
    public void BadGemmaFoldersAreOneLineErrorsNamingWhatIsWrong()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), Config(gemma2: true));
        var hf = HuggingFaceTensors(gemma2: true);
        InvalidDataException Import(Dictionary<string, Tensor> tensors)
        {
            SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), tensors);
            return Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path));
        }
        var missing = new Dictionary<string, Tensor>(hf);
        missing.Remove("model.layers.1.post_feedforward_layernorm.weight");
        Assert.Contains("missing tensor 'model.layers.1.post_feedforward_layernorm.weight'", Import(missing).Message);
        var reshaped = new Dictionary<string, Tensor>(hf) { ["model.layers.0.self_attn.q_proj.weight"] = zeros(32, 32) };
        Assert.Contains("tensor 'model.layers.0.self_attn.q_proj.weight' has shape [32, 32], config.json implies [64, 32]", Import(reshaped).Message);
        var extra = new Dictionary<string, Tensor>(hf) { ["model.layers.0.self_attn.q_norm.weight"] = zeros(16) };
        Assert.Contains("unexpected tensors model.layers.0.self_attn.q_norm.weight", Import(extra).Message);
        var untied = new Dictionary<string, Tensor>(hf) { ["lm_head.weight"] = zeros(40, 32) };
        Assert.Contains("'lm_head.weight' differs from 'model.embed_tokens.weight'", Import(untied).Message);

        File.WriteAllText(temp.File("config.json"), Config(gemma2: true).Replace("\"hidden_activation\": \"gelu_pytorch_tanh\"", "\"hidden_activation\": \"silu\""));
        Assert.Contains("hidden_activation = silu", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.ReadOptions(temp.Path)).Message);
        File.WriteAllText(temp.File("config.json"), Config(gemma2: false).Replace("\"GemmaForCausalLM\"", "\"Gemma3ForCausalLM\""));
        Assert.Contains("architecture Gemma3ForCausalLM is not supported", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.ReadOptions(temp.Path)).Message);
    }
}
