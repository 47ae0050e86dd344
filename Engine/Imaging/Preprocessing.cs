namespace Tp7.Engine.Imaging;

/// <summary>
/// How a file becomes a network input: decode to RGB, resize to Size x Size with Pillow's antialiased
/// bilinear filter, scale to [0, 1], subtract Mean and divide by Std per channel — torchvision's
/// <c>Resize((Size, Size)), ToTensor(), Normalize(Mean, Std)</c>. MaxPixels and MaxFileBytes bound the
/// memory one file may claim; both are checked before any pixel is allocated.
/// </summary>
public sealed record Preprocessing
{
    public int Size { get; init; } = 224;
    public float[] Mean { get; init; } = [0.485f, 0.456f, 0.406f];
    public float[] Std { get; init; } = [0.229f, 0.224f, 0.225f];
    /// <summary>Pixels are scaled to [0, Range] before Mean and Std apply: 1 (torchvision) or 255 (CNTK/Caffe-style models).</summary>
    public float Range { get; init; } = 1f;
    public long MaxPixels { get; init; } = 8_000L * 8_000;
    public long MaxFileBytes { get; init; } = 256L << 20;

    /// <summary>torchvision's ImageNet normalisation at 224 x 224, the input VGG16 was trained on.</summary>
    public static Preprocessing ImageNet { get; } = new();

    /// <summary>The same preprocessing as a short text (sidecars, reports, cache keys).</summary>
    public string Describe() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Size}x{Size} bilinear, RGB in [0, {Range}], mean [{string.Join(", ", Mean)}], std [{string.Join(", ", Std)}]");

    /// <summary>Floats in one (3, Size, Size) tensor.</summary>
    public int TensorLength => 3 * Size * Size;

    public void Validate()
    {
        if (Size <= 0) throw new ArgumentException($"preprocessing: Size {Size} must be positive");
        if (Mean is not { Length: 3 }) throw new ArgumentException($"preprocessing: Mean needs 3 values (R, G, B), got {Mean?.Length ?? 0}");
        if (Std is not { Length: 3 }) throw new ArgumentException($"preprocessing: Std needs 3 values (R, G, B), got {Std?.Length ?? 0}");
        foreach (float s in Std)
            if (!(s > 0) || float.IsInfinity(s)) throw new ArgumentException($"preprocessing: Std value {s} must be positive and finite");
        if (Range is not (1f or 255f)) throw new ArgumentException($"--range must be 1 or 255, got {Range}");
        if (MaxPixels <= 0) throw new ArgumentException($"preprocessing: MaxPixels {MaxPixels} must be positive");
        if (MaxFileBytes <= 0) throw new ArgumentException($"preprocessing: MaxFileBytes {MaxFileBytes} must be positive");
    }
}
