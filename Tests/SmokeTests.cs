namespace Tp7.Tests;
public class ShapeTests
{
    [Fact]
    public void ConvShapeOutputSize()
    {
        var s = Tp7.Engine.Kernels.ConvShape.Square(1, 3, 224, 224, 64, 3, 1, 1);
        Assert.Equal(224, s.OutH);
        Assert.Equal(2.0 * 64 * 224 * 224 * 27, s.ForwardFlops);
    }
}
