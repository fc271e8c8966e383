package org.xlnetedge.app

import android.content.Context
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.nnapi.NnApiDelegate
import org.xlnetedge.tokenizer.Encoded
import java.io.File
import java.io.FileInputStream
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/** The bundle folder inside the APK's assets: manifest.json, labels.json, tokenizer.json, models/... */
const val BUNDLE_ASSETS = "bundle"

/**
 * Where a .tflite model runs. NNAPI hands the graph to the phone's driver (ops it lacks fall back to the plain CPU
 * kernels); XNNPACK is LiteRT's optimised CPU path; CPU is the plain reference kernels.
 */
enum class Backend { NNAPI, XNNPACK, CPU }

/** The backend an artifact was exported and checked for (its manifest "delegate"). */
fun defaultBackend(artifact: ArtifactSpec): Backend = when (artifact.delegate) {
    "nnapi" -> Backend.NNAPI
    "cpu" -> Backend.CPU
    else -> Backend.XNNPACK
}

/** One forward pass: tokenizer output in, one logit per label out. */
interface Classifier : AutoCloseable {
    fun logits(input: Encoded): FloatArray
}

/** manifest.json and labels.json from the bundled assets. */
fun loadBundleSpec(context: Context): BundleSpec {
    fun read(name: String) = context.assets.open("$BUNDLE_ASSETS/$name").bufferedReader().use { it.readText() }
    return BundleSpec.parse(read("manifest.json"), read("labels.json"))
}

/** Copy a bundled asset to app storage once: LiteRT maps it and ExecuTorch needs a real file path. */
fun assetFile(context: Context, path: String): File {
    val out = File(context.filesDir, path)
    if (!out.exists()) {
        out.parentFile?.mkdirs()
        context.assets.open(path).use { input -> out.outputStream().use { input.copyTo(it) } }
    }
    return out
}

/**
 * The artifact's model as a file in app storage, checked before anything loads it ([verifyModelFile] in Bundle.kt:
 * "valid": true, a "file" that stays inside the bundle, and the manifest's SHA-256). LiteRT maps it and ExecuTorch
 * needs a real file path, so the asset is copied once; a copy left by an older APK that no longer matches the
 * manifest is copied again, and a bundled file that does not match is refused with the reason.
 */
fun verifiedModelFile(context: Context, artifact: ArtifactSpec): File {
    val relative = bundlePath(artifact, "assets/$BUNDLE_ASSETS")  // before copying: "file" cannot lead out
    val bundleDir = File(context.filesDir, BUNDLE_ASSETS)
    val copy = File(bundleDir, relative)
    if (copy.isFile) {
        try {
            return verifyModelFile(bundleDir, artifact)
        } catch (stale: BundleException) {
            // copied from an earlier bundle: copy it again below and check that
        }
    }
    copy.parentFile?.mkdirs()
    val partial = File(copy.path + ".partial")
    context.assets.open("$BUNDLE_ASSETS/$relative").use { input -> partial.outputStream().use { input.copyTo(it) } }
    if (!partial.renameTo(copy)) throw IOException("cannot write $copy")
    return verifyModelFile(bundleDir, artifact)
}

/**
 * LiteRT (TFLite) classifier. The model's signature inputs (args_0, args_1, ... in the exported order, as
 * litert-torch names them) are fed with the inputs the manifest declares for this artifact, checked against the
 * model's own tensor types: int32 ids and masks, float32 mask_bias for the NNAPI bundle.
 */
class LiteRtClassifier(
    model: File,
    private val artifact: ArtifactSpec,
    private val maskValue: Float,
    backend: Backend,
    private val numLabels: Int
) : Classifier {
    private val nnapi: NnApiDelegate? = if (backend == Backend.NNAPI) NnApiDelegate() else null
    private val interpreter: Interpreter
    private val signature: String
    private val inputNames: List<String>
    private val outputName: String

    init {
        val options = Interpreter.Options().setNumThreads(4).setUseXNNPACK(backend == Backend.XNNPACK)
        nnapi?.let { options.addDelegate(it) }
        interpreter = Interpreter(mapModel(model), options)
        signature = interpreter.signatureKeys.firstOrNull()
            ?: throw IllegalArgumentException("${artifact.name} has no signature; re-export it with the toolkit")
        inputNames = signatureOrder(interpreter.getSignatureInputs(signature).toList())
        outputName = interpreter.getSignatureOutputs(signature).first()
        for ((name, spec) in inputNames.zip(artifact.inputs)) {
            val type = interpreter.getInputTensorFromSignature(name, signature).dataType()
            val expected = if (spec.dtype == "float32") DataType.FLOAT32 else DataType.INT32
            require(type == expected) { "model input $name is $type but the manifest says $spec" }
        }
    }

    /** The signature's input names in the manifest's order: by name when they match, else by their _N suffix. */
    private fun signatureOrder(names: List<String>): List<String> {
        val manifestNames = artifact.inputs.map { it.name }
        require(names.size == manifestNames.size) {
            "${artifact.name} has inputs $names, the manifest lists $manifestNames"
        }
        if (names.toSet() == manifestNames.toSet()) return manifestNames
        return names.sortedBy { it.substringAfterLast('_').toIntOrNull() ?: throw IllegalArgumentException(
            "cannot match the model's inputs $names to the manifest's $manifestNames") }
    }

    override fun logits(input: Encoded): FloatArray {
        val inputs = HashMap<String, Any>()
        for ((name, value) in inputNames.zip(modelInputs(artifact, input, maskValue))) inputs[name] = toBuffer(value)
        val output = Array(1) { FloatArray(numLabels) }
        interpreter.runSignature(inputs, mapOf<String, Any>(outputName to output), signature)
        return output[0]
    }

    override fun close() {
        interpreter.close()
        nnapi?.close()
    }

    private fun mapModel(file: File): MappedByteBuffer =
        FileInputStream(file).channel.use { it.map(FileChannel.MapMode.READ_ONLY, 0, it.size()) }

    /** A direct buffer in native byte order: 4 bytes per value, int32 or float32 as the input's dtype says. */
    private fun toBuffer(value: ModelInput): ByteBuffer {
        val count = value.ints?.size ?: value.floats!!.size
        val buffer = ByteBuffer.allocateDirect(count * 4).order(ByteOrder.nativeOrder())
        value.ints?.forEach { buffer.putInt(it) }
        value.floats?.forEach { buffer.putFloat(it) }
        buffer.rewind()
        return buffer
    }
}

/**
 * ExecuTorch classifier for the bundle's .pte (lowered to XNNPACK at export time). Inputs are int32 [1, L] (and
 * float32 mask_bias when the manifest says so), exactly the dtypes the program was exported with: int64 would be
 * rejected by the program.
 */
class ExecuTorchClassifier(
    model: File,
    private val artifact: ArtifactSpec,
    private val maskValue: Float
) : Classifier {
    private val module: Module = Module.load(model.absolutePath)

    override fun logits(input: Encoded): FloatArray {
        val values = modelInputs(artifact, input, maskValue).map { value ->
            val shape = value.spec.shapeLong
            val ints = value.ints
            EValue.from(if (ints != null) Tensor.fromBlob(ints, shape) else Tensor.fromBlob(value.floats!!, shape))
        }
        return module.forward(*values.toTypedArray())[0].toTensor().dataAsFloatArray
    }

    override fun close() = module.destroy()
}
