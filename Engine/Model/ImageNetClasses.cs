namespace Tp7.Engine.Model;

/// <summary>The 1000 ImageNet class names in index order (torchvision's list, embedded so classification works offline).</summary>
public static class ImageNetClasses
{
    static readonly Lazy<string[]> names = new(() =>
    {
        using var stream = typeof(ImageNetClasses).Assembly.GetManifestResourceStream("Tp7.Engine.Resources.imagenet_classes.txt")
            ?? throw new InvalidOperationException("the embedded ImageNet class list is missing from Tp7.Engine");
        using var reader = new StreamReader(stream);
        var list = reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (list.Length != Vgg16Architecture.NumClasses)
            throw new InvalidOperationException($"the embedded ImageNet class list has {list.Length} names, expected 1000");
        return list;
    });

    public static IReadOnlyList<string> Names => names.Value;
}
