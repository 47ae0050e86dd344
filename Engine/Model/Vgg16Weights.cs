namespace Tp7.Engine.Model;

/// <summary>
/// VGG16's 32 parameter tensors on the host, under torchvision's state_dict keys (OIHW convolutions,
/// (out, in) linear layers), with where they came from.
/// </summary>
public sealed class Vgg16Weights
{
    readonly Dictionary<string, float[]> tensors;

    public string Source { get; }

    /// <summary>Rows of classifier.6: 1,000 for ImageNet weights, the classes of a fine-tuned head.</summary>
    public int NumClasses { get; }
    /// <summary>Names of the head's classes when the file says them (a fine-tuned model), else null (ImageNet's).</summary>
    public IReadOnlyList<string>? ClassNames { get; }

    public Vgg16Weights(IReadOnlyDictionary<string, float[]> tensors, string source, IReadOnlyList<string>? classNames = null)
    {
        var problems = new List<string>();
        NumClasses = tensors.TryGetValue(Vgg16Architecture.HeadBias, out var hb) && hb.Length > 0 ? hb.Length : Vgg16Architecture.NumClasses;
        if (classNames != null && classNames.Count != NumClasses)
            problems.Add($"{classNames.Count} class names for a head of {NumClasses} rows");
        ClassNames = classNames;
        foreach (var (key, shape) in Vgg16Architecture.ParameterSpecsFor(NumClasses))
        {
            long expected = shape.Aggregate(1L, (a, b) => a * b);
            if (!tensors.TryGetValue(key, out var t)) problems.Add($"{key}: missing");
            else if (t.Length != expected) problems.Add($"{key}: {t.Length} values, expected {expected} for [{string.Join(", ", shape)}]");
        }
        foreach (var key in tensors.Keys)
            if (Vgg16Architecture.ParameterSpecs.All(p => p.Key != key)) problems.Add($"{key}: not a VGG16 parameter");
        if (problems.Count > 0)
            throw new ArgumentException($"{source}: not VGG16 weights: {string.Join("; ", problems)}");
        this.tensors = new Dictionary<string, float[]>(tensors);
        Source = source;
    }

    public float[] this[string key] => tensors.TryGetValue(key, out var t)
        ? t : throw new KeyNotFoundException($"{Source}: no tensor '{key}'");

    public long ParameterCount => tensors.Values.Sum(t => (long)t.Length);

    /// <summary>
    /// torchvision's randomly initialised VGG16 after <c>torch.manual_seed(seed)</c>, bit for bit what
    /// <c>tools/convert_weights.py --random-init --seed S</c> writes on a CPU with AVX2 (torch 1.13; see
    /// <see cref="TorchGenerator"/>), generated in memory. Lets the main job run on a machine with no weights file.
    /// torchvision 0.14 (models/vgg.py) builds the network first, and every Conv2d and Linear runs its own
    /// reset_parameters as it is constructed (kaiming_uniform_(weight, a=sqrt(5)), then uniform_(bias)), drawing
    /// one word per parameter; VGG.__init__ then overwrites them all (_initialize_weights): convolutions
    /// kaiming_normal_(mode="fan_out", nonlinearity="relu"), i.e. normal_(0, sqrt(2) / sqrt(out_channels * k * k)),
    /// linear layers normal_(0, 0.01), biases 0.
    /// </summary>
    public static Vgg16Weights RandomInit(int seed)
    {
        var layers = Vgg16Architecture.Layers.Where(l => l.WeightKey != null).ToList();
        var generator = new TorchGenerator(unchecked((ulong)seed));   // torch.manual_seed takes negative seeds mod 2^64
        // reset_parameters' values are all overwritten below; only how many words they drew matters.
        generator.Skip(layers.Sum(l => l.Parameters));
        var tensors = new Dictionary<string, float[]>();
        foreach (var l in layers)
        {
            var w = new float[l.Parameters - l.BiasShape![0]];
            double std = l.Kind == LayerKind.Conv
                ? Math.Sqrt(2.0) / Math.Sqrt(l.OutChannels * l.Kernel * l.Kernel)   // torch.nn.init: gain / sqrt(fan)
                : 0.01;
            generator.Normal(w, 0, std);
            tensors[l.WeightKey!] = w;
            tensors[l.BiasKey!] = new float[l.BiasShape[0]];
        }
        return new Vgg16Weights(tensors, $"random-init (torchvision's initialisation, torch.manual_seed({seed}), reproduced in memory)");
    }
}
