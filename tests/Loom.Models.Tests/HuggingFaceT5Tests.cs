using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Data;
using Loom.Models.Interop;
using Xunit.Abstractions;
using Loom.Models.T5;
using static TorchSharp.torch;

namespace Loom.Models.Tests;

/// <summary>Loom T5 (v1.1) models as Hugging Face T5ForConditionalGeneration folders and back.</summary>
public sealed class HuggingFaceT5Tests(ITestOutputHelper output)
{
    /// <summary>A tiny T5 v1.1 over 40 ids: d 32, 2 encoder and 3 decoder blocks, 4 heads of 6 (H·Dh = 24 ≠ d), d_ff 48.</summary>
    private static T5Options Tiny(double dropout = 0.1) => TinyModels.T5(vocabSize: 40, maxSequenceLength: 32) with
    {
        NumDecoderLayers = 3, HeadDim = 6, MlpDim = 48, DropoutRate = dropout,
    };

    /// <summary>Encoder inputs and decoder inputs (two rows of 11 and 9 tokens, long enough for logarithmic buckets).</summary>
    private static FeatureBatch Batch()
    {
        using var g = Seeded.Generator(3);
        var targets = randint(1, 40, [2, 9], generator: g);
        return new FeatureBatch(new Dictionary<string, Tensor>
        {
            [FeatureNames.EncoderInputTokens] = randint(1, 40, [2, 11], generator: g),
            [FeatureNames.DecoderInputTokens] = cat([zeros(2, 1, dtype: int64), targets.narrow(1, 0, 8)], 1), // shifted right behind 0
            [FeatureNames.DecoderTargetTokens] = targets,
        });
    }

    private static Tensor Logits(LanguageModel model, FeatureBatch batch)
    {
        model.eval();
        using var noGrad = no_grad();
        return model.Forward(batch).Logits; // (B, T, V)
    }

    [Fact]
    public void ALoomT5RoundTripsThroughAHuggingFaceFolderExactly()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var model = Seeded.Model(Tiny(), 1);
        Assert.Same(HuggingFaceT5.Instance, HuggingFaceModels.Export(model, temp.Path, eosTokenId: 1));
        using var back = (T5Model)HuggingFaceModels.Import(temp.Path);

        Assert.Equal(model.Options, back.Options);
        var original = model.state_dict();
        Assert.Equal(original.Keys.Order(), back.state_dict().Keys.Order());
        foreach (var (name, tensor) in back.state_dict())
            Assert.True(original[name].equal(tensor).all().item<bool>(), name);
        var batch = Batch();
        Assert.True(Logits(model, batch).equal(Logits(back, batch)).all().item<bool>());

        var saved = SafeTensors.Load(temp.File(HuggingFaceModels.WeightsFile));
        Assert.Equal([40L, 32L], saved["shared.weight"].shape);
        Assert.False(saved.ContainsKey("encoder.embed_tokens.weight")); // tied to shared.weight: transformers keeps that name only
        Assert.Equal([8L, 4L], saved["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape);
        Assert.False(saved.ContainsKey("decoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"));
        Assert.Equal([24L, 32L], saved["decoder.block.2.layer.1.EncDecAttention.k.weight"].shape);
        Assert.Equal([32L, 24L], saved["encoder.block.1.layer.0.SelfAttention.o.weight"].shape);
        Assert.Equal([32L, 48L], saved["decoder.block.2.layer.2.DenseReluDense.wo.weight"].shape);
        Assert.Equal([32L, 48L], saved["encoder.block.1.layer.1.DenseReluDense.wo.weight"].shape);
        Assert.True(saved["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].equal(original["encoder.relative_attention_bias.weight"]).all().item<bool>());
        var config = JsonNode.Parse(File.ReadAllText(temp.File(HuggingFaceModels.ConfigFile)))!;
        Assert.Equal("t5", config["model_type"]!.GetValue<string>());
        Assert.Equal("gated-gelu", config["feed_forward_proj"]!.GetValue<string>());
        Assert.False(config["tie_word_embeddings"]!.GetValue<bool>());
        Assert.Equal(3, config["num_decoder_layers"]!.GetValue<int>());
        Assert.Equal(0.1, config["dropout_rate"]!.GetValue<double>());
    }

    /// <summary>config.json as transformers' save_pretrained writes a T5 v1.1 T5ForConditionalGeneration (every T5Config field, sorted).</summary>
    private const string TransformersConfig = """
        {
          "architectures": ["T5ForConditionalGeneration"],
          "classifier_dropout": 0.0,
          "d_ff": 48,
          "d_kv": 6,
          "d_model": 32,
          "decoder_start_token_id": 0,
          "dense_act_fn": "gelu_new",
          "dropout_rate": 0.1,
          "eos_token_id": 1,
          "feed_forward_proj": "gated-gelu",
          "initializer_factor": 1.0,
          "is_encoder_decoder": true,
          "is_gated_act": true,
          "layer_norm_epsilon": 1e-06,
          "model_type": "t5",
          "n_positions": 32,
          "num_decoder_layers": 3,
          "num_heads": 4,
          "num_layers": 2,
          "pad_token_id": 0,
          "relative_attention_max_distance": 16,
          "relative_attention_num_buckets": 8,
          "tie_word_embeddings": false,
          "torch_dtype": "float32",
          "transformers_version": "4.46.0",
          "use_cache": true,
          "vocab_size": 40
        }
        """;

    /// <summary>Random tensors under the names and shapes transformers gives the T5 of <see cref="TransformersConfig"/>.</summary>
    private static Dictionary<string, Tensor> TransformersTensors()
    {
        using var g = Seeded.Generator(9);
        Tensor Kernel(long rows, long columns) => randn([rows, columns], generator: g) / Math.Sqrt(columns);
        Tensor Norm() => 1 + 0.1 * randn([32], generator: g);
        var hf = new Dictionary<string, Tensor> { ["shared.weight"] = randn([40, 32], generator: g), ["lm_head.weight"] = Kernel(40, 32) };
        foreach (var (stack, layers) in new[] { ("encoder", 2), ("decoder", 3) })
        {
            hf[$"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = randn([8, 4], generator: g);
            for (int i = 0; i < layers; i++)
            {
                string p = $"{stack}.block.{i}.layer.";
                var attention = new List<string> { "0.SelfAttention" };
                if (stack == "decoder") attention.Add("1.EncDecAttention");
                foreach (var a in attention)
                {
                    foreach (var w in new[] { "q", "k", "v" }) hf[$"{p}{a}.{w}.weight"] = Kernel(24, 32);
                    hf[$"{p}{a}.o.weight"] = Kernel(32, 24);
                    hf[$"{p}{a[0]}.layer_norm.weight"] = Norm();
                }
                int mlp = stack == "decoder" ? 2 : 1;
                hf[$"{p}{mlp}.DenseReluDense.wi_0.weight"] = Kernel(48, 32);
                hf[$"{p}{mlp}.DenseReluDense.wi_1.weight"] = Kernel(48, 32);
                hf[$"{p}{mlp}.DenseReluDense.wo.weight"] = Kernel(32, 48);
                hf[$"{p}{mlp}.layer_norm.weight"] = Norm();
            }
            hf[$"{stack}.final_layer_norm.weight"] = Norm();
        }
        return hf;
    }

    /// <summary>
    /// A folder as transformers' save_pretrained lays out a T5 v1.1 (its config.json fields and tensor names, written here
    /// by hand from the transformers source): sharded with only shared.weight, as safetensors keeps tied tensors, and in
    /// one file that holds the tied aliases too. Loom imports both and computes what the same weights compute in a Loom
    /// T5 whose weights were set here by Loom's names.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AFolderLaidOutAsTransformersSavesAT5ImportsAndScoresTheSame(bool sharded)
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), TransformersConfig);
        var hf = TransformersTensors();
        if (sharded)
        {
            HuggingFaceModels.WriteSharded(temp.Path, hf, maxShardBytes: 40 * 1024);
            Assert.True(Directory.GetFiles(temp.Path, "model-0000?-of-0000?.safetensors").Length > 2);
        }
        else
        {
            SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), new Dictionary<string, Tensor>(hf)
            {
                ["encoder.embed_tokens.weight"] = hf["shared.weight"].clone(), ["decoder.embed_tokens.weight"] = hf["shared.weight"].clone(),
            });
        }

        using var imported = (T5Model)HuggingFaceModels.Import(temp.Path);
        var o = imported.T5Options;
        Assert.Equal((40, 32, 2, 3, 4, 6, 48, 8, 16, 0.1, 1e-6, 32),
            (o.VocabSize, o.ModelDim, o.NumEncoderLayers, o.NumDecoderLayers, o.NumHeads, o.HeadDim, o.MlpDim,
             o.RelativeAttentionNumBuckets, o.RelativeAttentionMaxDistance, o.DropoutRate, o.NormEpsilon, o.MaxSequenceLength));
        Assert.Null(o.Moe);

        // The same weights set into a Loom T5 by Loom's own names.
        using var direct = new T5Model(o);
        var state = direct.state_dict();
        using (no_grad())
        {
            state["shared"].copy_(hf["shared.weight"]);
            state["lm_head.weight"].copy_(hf["lm_head.weight"]);
            foreach (var (stack, layers) in new[] { ("encoder", 2), ("decoder", 3) })
            {
                state[$"{stack}.relative_attention_bias.weight"].copy_(hf[$"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]);
                state[$"{stack}.final_norm.weight"].copy_(hf[$"{stack}.final_layer_norm.weight"]);
                for (int i = 0; i < layers; i++)
                {
                    string p = $"{stack}.block.{i}.layer.", b = $"{stack}.blocks.{i}.";
                    foreach (var w in new[] { "q", "k", "v", "o" })
                    {
                        state[$"{b}self_attn.{w}.weight"].copy_(hf[$"{p}0.SelfAttention.{w}.weight"]);
                        if (stack == "decoder") state[$"{b}cross_attn.{w}.weight"].copy_(hf[$"{p}1.EncDecAttention.{w}.weight"]);
                    }
                    state[$"{b}self_attn_norm.weight"].copy_(hf[$"{p}0.layer_norm.weight"]);
                    if (stack == "decoder") state[$"{b}cross_attn_norm.weight"].copy_(hf[$"{p}1.layer_norm.weight"]);
                    int mlp = stack == "decoder" ? 2 : 1;
                    foreach (var w in new[] { "wi_0", "wi_1", "wo" })
                        state[$"{b}mlp.{w}.weight"].copy_(hf[$"{p}{mlp}.DenseReluDense.{w}.weight"]);
                    state[$"{b}mlp_norm.weight"].copy_(hf[$"{p}{mlp}.layer_norm.weight"]);
                }
            }
        }
        var batch = Batch();
        var (fromFolder, fromNames) = (Logits(imported, batch), Logits(direct, batch));
        Assert.True(fromFolder.equal(fromNames).all().item<bool>(), $"max difference {(fromFolder - fromNames).abs().max().item<float>()}");
    }

    /// <summary>
    /// transformers' T5ForConditionalGeneration forward written out with plain torch ops from its source (modeling_t5.py),
    /// independently of Loom's layers: T5LayerNorm (no mean, no bias), attention logits q·kᵀ unscaled plus the stack's
    /// position bias from <c>_relative_position_bucket</c> (bidirectional in the encoder, causal in the decoder, none in
    /// cross-attention), gated-gelu with gelu_new's tanh formula, and the untied lm_head without rescaling. Loom's import of
    /// the same tensors computes the same logits.
    /// </summary>
    [Fact]
    public void LoomsT5ComputesWhatTransformersT5Computes()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), TransformersConfig);
        var hf = TransformersTensors();
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), hf);
        using var model = HuggingFaceModels.Import(temp.Path);
        var batch = Batch();
        var actual = Logits(model, batch);

        const int heads = 4, headDim = 6, buckets = 8, maxDistance = 16;
        Tensor Norm(Tensor x, string name) => hf[name] * (x * (x.pow(2).mean([-1], keepdim: true) + 1e-6).rsqrt());
        Tensor Linear(Tensor x, string name) => x.matmul(hf[name].t());
        Tensor GeluNew(Tensor x) => 0.5 * x * (1 + (Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x.pow(3))).tanh());
        Tensor Bucket(Tensor relative, bool bidirectional)
        {
            var result = zeros_like(relative);
            int n = buckets;
            if (bidirectional)
            {
                n /= 2;
                result += relative.gt(0).to(int64) * n;
                relative = relative.abs();
            }
            else
            {
                relative = -minimum(relative, zeros_like(relative));
            }
            int maxExact = n / 2;
            var large = maxExact + ((relative.to(float32) / maxExact).log() / Math.Log((double)maxDistance / maxExact) * (n - maxExact)).to(int64);
            large = minimum(large, full_like(large, n - 1));
            return result + where(relative.lt(maxExact), relative, large);
        }
        Tensor PositionBias(long queries, long keys, bool bidirectional, string table)
        {
            var relative = arange(keys).unsqueeze(0) - arange(queries).unsqueeze(1);                          // (T, S): memory − context
            return hf[table].index_select(0, Bucket(relative, bidirectional).flatten()).view(queries, keys, heads).permute(2, 0, 1).unsqueeze(0); // (1, H, T, S)
        }
        Tensor Attention(Tensor x, Tensor memory, string p, Tensor? bias)
        {
            Tensor Heads(Tensor y) => y.view(y.shape[0], y.shape[1], heads, headDim).transpose(1, 2);           // (B, H, T, Dh)
            var scores = Heads(Linear(x, p + "q.weight")).matmul(Heads(Linear(memory, p + "k.weight")).transpose(2, 3)); // no 1/√d_kv
            if (bias is not null) scores = scores + bias;
            var y = scores.softmax(-1).matmul(Heads(Linear(memory, p + "v.weight")));                            // (B, H, T, Dh)
            return Linear(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], heads * headDim), p + "o.weight");
        }
        Tensor FeedForward(Tensor x, string p) => Linear(GeluNew(Linear(x, p + "wi_0.weight")) * Linear(x, p + "wi_1.weight"), p + "wo.weight");

        var inputs = batch[FeatureNames.EncoderInputTokens];
        var h = hf["shared.weight"].index_select(0, inputs.flatten()).view(inputs.shape[0], inputs.shape[1], 32);
        var encoderBias = PositionBias(inputs.shape[1], inputs.shape[1], true, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
        for (int i = 0; i < 2; i++)
        {
            string p = $"encoder.block.{i}.layer.";
            var n = Norm(h, p + "0.layer_norm.weight");
            h = h + Attention(n, n, p + "0.SelfAttention.", encoderBias);
            h = h + FeedForward(Norm(h, p + "1.layer_norm.weight"), p + "1.DenseReluDense.");
        }
        var encoded = Norm(h, "encoder.final_layer_norm.weight");

        var tokens = batch[FeatureNames.DecoderInputTokens];
        long t = tokens.shape[1];
        var decoderBias = PositionBias(t, t, false, "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
            .masked_fill(ones(t, t, dtype: @bool).triu(1), double.NegativeInfinity);                          // causal
        h = hf["shared.weight"].index_select(0, tokens.flatten()).view(tokens.shape[0], t, 32);
        for (int i = 0; i < 3; i++)
        {
            string p = $"decoder.block.{i}.layer.";
            var n = Norm(h, p + "0.layer_norm.weight");
            h = h + Attention(n, n, p + "0.SelfAttention.", decoderBias);
            h = h + Attention(Norm(h, p + "1.layer_norm.weight"), encoded, p + "1.EncDecAttention.", null);
            h = h + FeedForward(Norm(h, p + "2.layer_norm.weight"), p + "2.DenseReluDense.");
        }
        var expected = Linear(Norm(h, "decoder.final_layer_norm.weight"), "lm_head.weight");                 // untied: no d_model^-0.5

        float difference = (actual - expected).abs().max().item<float>(), scale = expected.abs().max().item<float>();
        output.WriteLine($"T5 logits: max |Loom − transformers' formula| = {difference:G3}, logits up to {scale:G3}");
        Assert.True(difference < 1e-5 * Math.Max(1, scale), $"max difference {difference} (logits up to {scale})");
    }

    [Fact]
    public void ConfigurationsNoT5RepresentsAreRefusedNamingTheOption()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        using var switchT5 = Seeded.Model(Tiny() with { Moe = new MoeOptions { NumExperts = 4, Every = 2 } }, 1);
        var message = Assert.Throws<ArgumentException>(() => HuggingFaceModels.Export(switchT5, temp.Path)).Message;
        Assert.Contains("not T5ForConditionalGeneration: model.moe: a T5 with a mixture of experts is a Switch Transformer", message);
        Assert.Contains("not LlamaForCausalLM: model.architecture = t5", message);
        Assert.False(File.Exists(temp.File(HuggingFaceModels.ConfigFile))); // nothing written
        Assert.Contains("only encoder-decoder (t5) models are T5s", HuggingFaceT5.Instance.WhyNot(TinyModels.Decoder()));

        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), TransformersTensors());
        foreach (var (from, to, expected) in new[]
        {
            ("\"feed_forward_proj\": \"gated-gelu\"", "\"feed_forward_proj\": \"relu\"", "feed_forward_proj = relu: Loom's T5 is T5 v1.1"),
            ("\"feed_forward_proj\": \"gated-gelu\",", "", "feed_forward_proj = relu"), // T5Config's default is the original T5's
            ("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true", "tie_word_embeddings = true"),
            ("\"tie_word_embeddings\": false,", "", "tie_word_embeddings = true"),     // PretrainedConfig's default ties
            ("\"relative_attention_num_buckets\": 8", "\"relative_attention_num_buckets\": 7", "model.relative_attention_num_buckets = 7 must be even"),
            ("\"d_kv\": 6,", "", "missing \"d_kv\""),
        })
        {
            File.WriteAllText(temp.File("config.json"), TransformersConfig.Replace(from, to));
            Assert.Contains(expected, Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);
        }
    }

    [Fact]
    public void BadT5FoldersAreOneLineErrorsNamingTheTensor()
    {
        using var scope = NewDisposeScope();
        using var temp = new TempDirectory("loom-hf-");
        File.WriteAllText(temp.File("config.json"), TransformersConfig);
        var weights = TransformersTensors();

        var missing = new Dictionary<string, Tensor>(weights);
        missing.Remove("decoder.block.1.layer.1.EncDecAttention.k.weight");
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), missing);
        Assert.Contains("missing tensor 'decoder.block.1.layer.1.EncDecAttention.k.weight'", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        var noEmbedding = new Dictionary<string, Tensor>(weights);
        noEmbedding.Remove("shared.weight");
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), noEmbedding);
        Assert.Contains("missing tensor 'shared.weight'", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        var transposed = new Dictionary<string, Tensor>(weights) { ["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = zeros(4, 8) };
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), transposed);
        Assert.Contains("tensor 'encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight' has shape [4, 8], config.json implies [8, 4]", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        var perLayerBias = new Dictionary<string, Tensor>(weights) { ["encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"] = zeros(8, 4) };
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), perLayerBias);
        Assert.Contains("unexpected tensors encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        var untied = new Dictionary<string, Tensor>(weights) { ["decoder.embed_tokens.weight"] = zeros(40, 32) };
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), untied);
        Assert.Contains("tensor 'decoder.embed_tokens.weight' differs from 'shared.weight'", Assert.Throws<InvalidDataException>(() => HuggingFaceModels.Import(temp.Path)).Message);

        // Only an alias, as some conversions store it: read as the shared embedding.
        var aliasOnly = new Dictionary<string, Tensor>(weights) { ["encoder.embed_tokens.weight"] = weights["shared.weight"] };
        aliasOnly.Remove("shared.weight");
        SafeTensors.Save(temp.File(HuggingFaceModels.WeightsFile), aliasOnly);
        using var model = HuggingFaceModels.Import(temp.Path);
        Assert.True(model.state_dict()["shared"].equal(weights["shared.weight"]).all().item<bool>());
    }
}
