namespace Tp7.Engine.Kernels;

/// <summary>Host-side argument checks run before any launch; messages name the tensor and both sizes.</summary>
public static class Check
{
    public static void Length(string tensor, long actual, long expected, object shape)
    {
        if (actual != expected)
            throw new ArgumentException($"{tensor}: buffer has {actual} elements, expected {expected} for {shape}");
    }

    public static void AtLeast(string tensor, long actual, long expected, object shape)
    {
        if (actual < expected)
            throw new ArgumentException($"{tensor}: buffer has {actual} elements, needs at least {expected} for {shape}");
    }
}
