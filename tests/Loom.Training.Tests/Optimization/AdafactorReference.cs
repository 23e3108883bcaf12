using Loom.Training.Optimization;

namespace Loom.Training.Tests.Optimization;

/// <summary>
/// Adafactor written element by element in doubles from Shazeer &amp; Stern (2018), Algorithms 4 (factored,
/// with row and column sums R, C and V̂ = R Cᵀ / 1ᵀR) and 5 (unfactored), with the momentum and decoupled
/// weight decay that t5x adds: m ← β1·m + (1 − β1)·α·Û, x ← (1 − w)·x − m.
/// A tensor [..., R, C] is treated as a batch of independent R×C matrices.
/// </summary>
internal sealed class AdafactorReference
{
    private sealed class Param
    {
        public required string Name;
        public required long[] Shape;
        public required double[] X;
        public required bool Factored;
        public required bool Decays;
        public double[] V = [], RowSums = [], ColSums = [], M = [];
    }

    private readonly AdafactorOptions _o;
    private readonly List<Param> _params = new();
    private long _t;

    public AdafactorReference(AdafactorOptions options, IEnumerable<(string Name, long[] Shape, double[] Values)> parameters)
    {
        _o = options;
        bool anyDecay = options.WeightDecayRate is not null || options.DecoupledWeightDecayFromLrSquared;
        foreach (var (name, shape, values) in parameters)
        {
            bool factored = options.Factored && shape.Length >= 2 && shape[^1] >= options.MinDimSizeToFactor && shape[^2] >= options.MinDimSizeToFactor;
            bool decays = anyDecay && !(options.DecayOnlyMatrices && shape.Length < 2) && !(options.ExcludeFromWeightDecay?.Invoke(name) ?? false);
            var (b, r, c) = Dims(shape);
            _params.Add(new Param
            {
                Name = name, Shape = shape, X = (double[])values.Clone(), Factored = factored, Decays = decays,
                V = factored ? [] : new double[values.Length],
                RowSums = factored ? new double[b * r] : [],
                ColSums = factored ? new double[b * c] : [],
                M = new double[values.Length],
            });
        }
    }

    public double[] Values(string name) => _params.Single(p => p.Name == name).X;

    public void Step(double lr, IReadOnlyDictionary<string, double[]> grads)
    {
        _t++;
        double beta2 = 1 - Math.Pow(_t, -_o.DecayRate);
        foreach (var p in _params)
        {
            double[] g = grads[p.Name];
            int n = g.Length;
            var vHat = new double[n];
            if (p.Factored)
            {
                var (batches, rows, cols) = Dims(p.Shape);
                for (int b = 0; b < batches; b++)
                {
                    for (int i = 0; i < rows; i++)
                    {
                        double sum = 0;
                        for (int j = 0; j < cols; j++)
                            sum += Sq(g[(b * rows + i) * cols + j]);
                        p.RowSums[b * rows + i] = beta2 * p.RowSums[b * rows + i] + (1 - beta2) * sum;
                    }
                    for (int j = 0; j < cols; j++)
                    {
                        double sum = 0;
                        for (int i = 0; i < rows; i++)
                            sum += Sq(g[(b * rows + i) * cols + j]);
                        p.ColSums[b * cols + j] = beta2 * p.ColSums[b * cols + j] + (1 - beta2) * sum;
                    }
                    double total = 0;
                    for (int i = 0; i < rows; i++)
                        total += p.RowSums[b * rows + i];
                    for (int i = 0; i < rows; i++)
                        for (int j = 0; j < cols; j++)
                            vHat[(b * rows + i) * cols + j] = p.RowSums[b * rows + i] * p.ColSums[b * cols + j] / total;
                }
            }
            else
            {
                for (int k = 0; k < n; k++)
                {
                    p.V[k] = beta2 * p.V[k] + (1 - beta2) * Sq(g[k]);
                    vHat[k] = p.V[k];
                }
            }

            var u = new double[n];
            for (int k = 0; k < n; k++)
                u[k] = g[k] / Math.Sqrt(vHat[k]);
            if (_o.ClipThreshold is double d)
            {
                double divisor = Math.Max(1, Rms(u) / d);
                for (int k = 0; k < n; k++)
                    u[k] /= divisor;
            }
            double alpha = lr * (_o.MultiplyByParameterScale ? Math.Max(_o.Epsilon2, Rms(p.X)) : 1);
            double w = !p.Decays ? 0
                : _o.DecoupledWeightDecayFromLrSquared ? (_o.WeightDecayRate ?? 1) * lr * lr
                : _o.WeightDecayRate ?? 0;
            for (int k = 0; k < n; k++)
            {
                double update = alpha * u[k];
                if (_o.Beta1 > 0)
                {
                    p.M[k] = _o.Beta1 * p.M[k] + (1 - _o.Beta1) * update;
                    update = p.M[k];
                }
                p.X[k] = (1 - w) * p.X[k] - update;
            }
        }
    }

    private double Sq(double g) => g * g + _o.Epsilon1;

    private static double Rms(double[] x) => Math.Sqrt(x.Sum(v => v * v) / x.Length);

    private static (int Batches, int Rows, int Cols) Dims(long[] shape) => shape.Length < 2
        ? (1, 1, (int)shape.Aggregate(1L, (a, b) => a * b))
        : ((int)shape[..^2].Aggregate(1L, (a, b) => a * b), (int)shape[^2], (int)shape[^1]);
}
