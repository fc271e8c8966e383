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
 * Where a .tflite model runs. XNNPACK is LiteRT's optimised CPU path, the default (what the android-arm64 profile
 * exports and checks for); CPU is the plain reference kernels. NNAPI is the LEGACY path (android-nnapi bundles): it
 * hands the graph to the phone's NNAPI driver (ops it lacks fall back to the CPU kernels); NNAPI exists from Android
 * 8.1 (API 27) and is deprecated since Android 15 (API 35), so it is used only when asked for.
 */
enum class Backend { XNNPACK, CPU, NNAPI }

/** First API level with NNAPI 1.1, and the one that deprecates NNAPI (Android 15). */
const val NNAPI_MIN_API = 27
const val NNAPI_DEPRECATED_API = 35

/**
 * The backend to use when none is asked for: XNNPACK on the CPU, also for an NNAPI bundle's full-int8 model (XNNPACK
 * runs int8 models), so a phone without NNAPI works out of the box; plain CPU when the manifest says "cpu".
 */
fun defaultBackend(artifact: ArtifactSpec): Backend = when (artifact.delegate) {
    "cpu" -> Backend.CPU
    else -> Backend.XNNPACK
}

/**
 * [asked] (an intent extra: XNNPACK, CPU or NNAPI) checked against the device's [apiLevel], else [defaultBackend].
 * NNAPI below API 27 is refused; from API 35 on it still runs where the vendor keeps it, with a warning.
 */
fun chooseBackend(artifact: ArtifactSpec, asked: String?, apiLevel: Int, warn: (String) -> Unit): Backend {
    val backend = if (asked != null) Backend.valueOf(asked) else defaultBackend(artifact)
    if (backend == Backend.NNAPI) {
        require(apiLevel >= NNAPI_MIN_API) { "NNAPI needs Android 8.1 (API $NNAPI_MIN_API); this device is API $apiLevel" }
        if (apiLevel >= NNAPI_DEPRECATED_API) {
            warn("NNAPI is deprecated since Android 15 (API $NNAPI_DEPRECATED_API): prefer XNNPACK (the default)")
        }
    } else if (artifact.delegate == "nnapi") {
        warn("${artifact.name} was exported for the legacy NNAPI path; running it on $backend " +
            "(--es backend NNAPI uses NNAPI on devices that still have it, API $NNAPI_MIN_API-${NNAPI_DEPRECATED_API - 1})")
    }
    return backend
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
